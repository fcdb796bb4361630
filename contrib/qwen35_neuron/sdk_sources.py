"""Where the public SDK sources live on this machine (fetched, never committed).

NxDI, NxD, nki-library and vllm-neuron are public Python on GitHub but not on PyPI. The test tiers
that run our code inside them find each repository's tree under one fixed place,
``~/.cache/qwen35-neuron/sources/<repo-name>/`` (``QWEN35_SOURCES`` names another). A tier whose
sources are absent skips with the one line `missing_sources_line` returns, so a contributor's fresh
laptop stays green and says how to get them.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_SOURCES = Path.home() / ".cache" / "qwen35-neuron" / "sources"

NXDI = "neuronx-distributed-inference"
NXD = "neuronx-distributed"
NKI_LIBRARY = "nki-library"
VLLM_NEURON = "vllm-neuron"

GITHUB = {
    NXDI: "aws-neuron/neuronx-distributed-inference",
    NXD: "aws-neuron/neuronx-distributed",
    NKI_LIBRARY: "aws-neuron/nki-library",
    VLLM_NEURON: "whn09/vllm-neuron",
}


def sources_root(override: str | os.PathLike | None = None) -> Path:
    """The directory holding one subdirectory per fetched repository."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("QWEN35_SOURCES")
    return Path(env).expanduser() if env else DEFAULT_SOURCES


def source_tree(repo: str, root: str | os.PathLike | None = None) -> Path | None:
    """The extracted tree of ``repo`` (one of the names above), or None when it is absent."""
    path = sources_root(root) / repo
    return path if path.is_dir() and any(path.iterdir()) else None


def missing_sources(repos: list[str], root: str | os.PathLike | None = None) -> list[str]:
    return [repo for repo in repos if source_tree(repo, root) is None]


def missing_sources_line(tier: str, repos: list[str], root: str | os.PathLike | None = None) -> str:
    """One line saying which sources a tier lacks and how to get them."""
    absent = missing_sources(repos, root)
    where = sources_root(root)
    cloned = [f"https://github.com/{GITHUB[r]}" for r in absent if r in GITHUB]
    how = f"clone {', '.join(cloned)} there; " if cloned else ""
    placed = [r for r in absent if r not in GITHUB]  # files of earlier commits, placed beside the trees
    if placed:
        how += f"{', '.join(placed)}: files of earlier commits, see "
    return (f"{tier}: skipped, sources absent under {where}: {', '.join(absent)} "
            f"({how}README, 'Test tiers over the real SDK sources')")
