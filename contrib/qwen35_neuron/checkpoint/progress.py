"""A byte-count progress bar for reading and converting real-size checkpoints.

The loaders report progress as (bytes done, bytes in all) after each tensor
(:data:`~.integrity.ByteProgress`); :func:`byte_bar` turns that into a tqdm bar on stderr. By
default it shows only when stderr is a terminal (tqdm's own rule), so tests, pipes and ``--json``
output stay quiet; stdout is never written.
"""

from __future__ import annotations

import sys
from typing import Callable

ByteProgress = Callable[[int, int], None]


def byte_bar(description: str, enabled: bool | None = None) -> ByteProgress:
    """A progress callback drawing a tqdm bar (GB read of GB) on stderr; ``enabled=None``: only on a
    terminal. The bar opens at the first call and closes when done reaches the total."""
    state: dict = {"bar": None, "done": 0}

    def report(done: int, total: int) -> None:
        if state["bar"] is None:
            from tqdm import tqdm  # a dependency of transformers

            state["bar"] = tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
                                file=sys.stderr, disable=None if enabled is None else not enabled, leave=True)
        state["bar"].update(done - state["done"])
        state["done"] = done
        if done >= total:
            state["bar"].close()

    return report
