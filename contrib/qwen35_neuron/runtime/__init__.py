"""CPU runtime: build rank models from a checkpoint, run CTE then TKG with carried state, sample."""
