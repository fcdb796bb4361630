"""Seeded random RGB images written as PNG files (the image paths read files), for tests and the demo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_random_images(directory: str | Path, sizes: dict[str, tuple[int, int]], seed: int) -> dict[str, str]:
    """``{name: path}`` of one PNG per entry of ``sizes`` ({name: (height, width)} in pixels)."""
    rng = np.random.default_rng(seed)
    paths = {}
    for name, (height, width) in sizes.items():
        paths[name] = str(Path(directory) / f"{name}.png")
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(paths[name])
    return paths
