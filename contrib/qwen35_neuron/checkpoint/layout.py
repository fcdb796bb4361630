"""Map the key layouts found in the wild onto one canonical naming.

Canonical names (what the model modules use):

* text: no prefix (``embed_tokens.weight``, ``layers.3.mlp.experts.gate_up_proj``, ``lm_head.weight``);
* vision: ``visual.`` + Hugging Face's name after ``model.visual.``;
* MTP: ``mtp.`` + the name after ``mtp.``.

Raw prefixes accepted: ``model.language_model.`` (composite checkpoints), ``model.`` (text-only
``Qwen3_5MoeForCausalLM``), ``language_model.`` / ``language_model.model.`` (some exports),
``lm_head.``, ``model.visual.`` / ``visual.``, ``mtp.`` / ``model.mtp.``, and bare base-model names.
Experts come fused (``experts.gate_up_proj`` [E, 2I, H], ``experts.down_proj`` [E, H, I]) or per
expert (``experts.{e}.gate_proj.weight`` ...); per-expert tensors become an
:class:`StackedExperts` source that is stacked into the fused form only when read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Union

import torch

from .reader import CheckpointReader, TensorInfo

TEXT, VISION, MTP = "text", "vision", "mtp"
SECTIONS = (TEXT, VISION, MTP)

# (raw prefix, section, canonical prefix); the longest matching prefix wins, so order by length.
_PREFIX_RULES: tuple[tuple[str, str, str], ...] = tuple(sorted(
    [
        ("model.language_model.", TEXT, ""),
        ("language_model.model.", TEXT, ""),
        ("language_model.lm_head.", TEXT, "lm_head."),
        ("language_model.", TEXT, ""),
        ("model.visual.", VISION, "visual."),
        ("visual.", VISION, "visual."),
        ("model.mtp.", MTP, "mtp."),
        ("mtp.", MTP, "mtp."),
        ("lm_head.", TEXT, "lm_head."),
        ("model.", TEXT, ""),
        ("embed_tokens.", TEXT, "embed_tokens."),
        ("layers.", TEXT, "layers."),
        ("norm.", TEXT, "norm."),
    ],
    key=lambda rule: -len(rule[0]),
))

_PER_EXPERT = re.compile(r"^(?P<owner>.*\bmlp\.experts)\.(?P<expert>\d+)\.(?P<proj>gate_proj|up_proj|down_proj)\.weight$")
GATE_UP, DOWN = "gate_up_proj", "down_proj"


def classify_key(raw_key: str) -> tuple[str, str] | None:
    """``raw_key`` -> (section, canonical name), or None when no known prefix matches."""
    matched = _match_prefix(raw_key)
    return None if matched is None else matched[1:]


def _match_prefix(raw_key: str) -> tuple[str, str, str] | None:
    """``raw_key`` -> (raw prefix, section, canonical name)."""
    for prefix, section, canonical_prefix in _PREFIX_RULES:
        if raw_key.startswith(prefix):
            return prefix, section, canonical_prefix + raw_key[len(prefix):]
    return None


def section_of(canonical: str) -> str:
    """Section of a canonical name (vision and MTP names carry their prefix, text names none)."""
    if canonical.startswith("visual."):
        return VISION
    if canonical.startswith("mtp."):
        return MTP
    return TEXT


@dataclass(frozen=True)
class DirectSource:
    """A canonical tensor stored under one raw key."""

    raw_key: str
    shape: tuple[int, ...]
    dtype: str


@dataclass
class StackedExperts:
    """A fused expert tensor assembled from per-expert tensors (``kind`` is gate_up_proj or down_proj).

    ``parts[e][proj]`` is the per-expert tensor of expert ``e`` (proj: gate_proj/up_proj, or down_proj).
    ``per_expert_name(e, proj)`` gives its canonical per-expert name for messages.
    """

    owner: str  # canonical owner, e.g. "layers.3.mlp.experts"
    kind: str
    parts: dict[int, dict[str, DirectSource]] = field(default_factory=dict)

    @property
    def projections(self) -> tuple[str, ...]:
        return ("gate_proj", "up_proj") if self.kind == GATE_UP else ("down_proj",)

    def per_expert_name(self, expert: int, proj: str) -> str:
        return f"{self.owner}.{expert}.{proj}.weight"

    @property
    def dtype(self) -> str:
        dtypes = {src.dtype for by_proj in self.parts.values() for src in by_proj.values()}
        return dtypes.pop() if len(dtypes) == 1 else "/".join(sorted(dtypes))

    @property
    def raw_keys(self) -> list[str]:
        return [src.raw_key for e in sorted(self.parts) for src in self.parts[e].values()]


Source = Union[DirectSource, StackedExperts]


@dataclass(frozen=True)
class Duplicate:
    """A raw key whose canonical name another raw key already provides."""

    raw_key: str
    canonical: str
    kept: str  # the raw key (or layout) that won


@dataclass
class CheckpointLayout:
    """Every raw key of a checkpoint, resolved to canonical sources (built from headers only)."""

    sources: dict[str, Source]
    duplicates: list[Duplicate]
    unrecognised: list[str]
    prefixes: dict[str, int]  # raw prefix -> number of keys using it (for the report)

    @classmethod
    def from_infos(cls, infos: Mapping[str, TensorInfo]) -> "CheckpointLayout":
        sources: dict[str, Source] = {}
        duplicates: list[Duplicate] = []
        unrecognised: list[str] = []
        prefixes: dict[str, int] = {}
        stacked: dict[str, StackedExperts] = {}
        for raw_key, info in infos.items():
            matched = _match_prefix(raw_key)
            if matched is None:
                unrecognised.append(raw_key)
                continue
            prefix, _, canonical = matched
            prefixes[prefix] = prefixes.get(prefix, 0) + 1
            direct = DirectSource(raw_key, info.shape, info.dtype)
            match = _PER_EXPERT.match(canonical)
            if match is None:
                _claim(sources, canonical, direct, duplicates)
                continue
            kind = DOWN if match["proj"] == "down_proj" else GATE_UP
            fused_name = f"{match['owner']}.{kind}"
            group = stacked.setdefault(fused_name, StackedExperts(owner=match["owner"], kind=kind))
            by_proj = group.parts.setdefault(int(match["expert"]), {})
            if match["proj"] in by_proj:
                duplicates.append(Duplicate(raw_key, canonical, by_proj[match["proj"]].raw_key))
            else:
                by_proj[match["proj"]] = direct
        for fused_name, group in stacked.items():
            if fused_name in sources:  # fused and per-expert copies both present: the fused one wins
                kept = sources[fused_name]
                kept_key = kept.raw_key if isinstance(kept, DirectSource) else fused_name
                duplicates.extend(Duplicate(k, fused_name, kept_key) for k in group.raw_keys)
            else:
                sources[fused_name] = group
        return cls(sources=sources, duplicates=duplicates, unrecognised=unrecognised, prefixes=prefixes)

    @classmethod
    def from_reader(cls, reader: CheckpointReader) -> "CheckpointLayout":
        return cls.from_infos(reader.infos())

    def section(self, name: str) -> dict[str, Source]:
        """Canonical name -> source for one section (text / vision / mtp)."""
        return {k: v for k, v in self.sources.items() if section_of(k) == name}

    @property
    def expert_layout(self) -> str:
        """"fused", "per_expert", "mixed" or "none" (for messages)."""
        kinds = {isinstance(src, StackedExperts) for name, src in self.sources.items()
                 if name.endswith((f"experts.{GATE_UP}", f"experts.{DOWN}"))}
        if not kinds:
            return "none"
        if kinds == {True}:
            return "per_expert"
        return "fused" if kinds == {False} else "mixed"

    def describe(self) -> str:
        prefixes = ", ".join(f"{p} ({n})" for p, n in sorted(self.prefixes.items(), key=lambda x: -x[1]))
        return f"prefixes: {prefixes or 'none'}; experts: {self.expert_layout}"


def _claim(sources: dict[str, Source], canonical: str, direct: DirectSource, duplicates: list[Duplicate]) -> None:
    if canonical in sources:
        kept = sources[canonical]
        duplicates.append(Duplicate(direct.raw_key, canonical, kept.raw_key if isinstance(kept, DirectSource) else ""))
    else:
        sources[canonical] = direct


def read_source(reader: CheckpointReader, source: Source, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Read one canonical tensor in ``dtype`` (None: as stored). Per-expert parts are read straight
    into their slots of the fused tensor, so stacking costs no second copy."""
    if isinstance(source, DirectSource):
        return reader.get(source.raw_key, dtype)
    experts = sorted(source.parts)
    first = [source.parts[experts[0]][proj] for proj in source.projections]
    rows = [part.shape[0] for part in first]
    out_dtype = dtype or reader.info(first[0].raw_key).torch_dtype
    out = torch.empty((len(experts), sum(rows), *first[0].shape[1:]), dtype=out_dtype)
    for slot, expert in enumerate(experts):
        start = 0
        for proj, count in zip(source.projections, rows):
            key = source.parts[expert][proj].raw_key
            target = out[slot, start:start + count]
            if reader.info(key).torch_dtype == out_dtype:
                reader.read_into(key, target)
            else:
                target.copy_(reader.get(key))
            start += count
    return out
