"""AWS's nki-library kernels from the fetched public sources (never committed), for comparisons.

The tree lives at ~/.cache/qwen35-neuron/sources/nki-library/ (src/nkilib_src/nkilib); the GDN
kernels of older nki-library commits sit beside it in nki-library-gdn/ with the same layout
(README, "nki-library conformance"). `nkilib_trees` finds them; `load_nkilib` imports one kernel
with the older trees' `experimental` folders joined to the main package. Imports run against
whatever `nki` is installed (the CPU emulator here).
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, List, Optional, Tuple

from ..sdk_sources import NKI_LIBRARY, missing_sources_line, source_tree

GDN_TREE = "nki-library-gdn"


def nkilib_trees() -> Tuple[Optional[Path], List[Path]]:
    """(nki-library tree or None, trees of older commits laid out like it)."""
    gdn = source_tree(GDN_TREE)
    return source_tree(NKI_LIBRARY), [gdn] if gdn else []


def missing_line(what: str) -> Optional[str]:
    """One line saying why nki-library kernels are unavailable, or None when they are present."""
    lib, extra = nkilib_trees()
    if lib is not None and extra:
        return None
    return missing_sources_line(what, [NKI_LIBRARY, GDN_TREE])


def load_nkilib(module: str, attr: str) -> Any:
    """`nkilib_src.nkilib.<module>.<attr>` (e.g. "experimental.gdn.gdn_tkg", "gdn_tkg")."""
    lib, extra = nkilib_trees()
    if lib is None:
        raise FileNotFoundError("nki-library sources are absent")
    src = str(lib / "src")
    if src not in sys.path:
        sys.path.append(src)
    experimental = importlib.import_module("nkilib_src.nkilib.experimental")
    for root in extra:
        path = str(root / "src/nkilib_src/nkilib/experimental")
        if path not in experimental.__path__:
            experimental.__path__.append(path)
    return getattr(importlib.import_module(f"nkilib_src.nkilib.{module}"), attr)
