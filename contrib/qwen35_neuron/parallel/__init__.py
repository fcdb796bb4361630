"""Parallelism: providers of linear layers / collectives, and the TP sharding of checkpoints."""

from .providers import DenseProvider, ParallelProvider, SimulatedTPProvider, simulated_tp_group

__all__ = ["DenseProvider", "ParallelProvider", "SimulatedTPProvider", "simulated_tp_group"]
