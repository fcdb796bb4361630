"""The tensor gate: does this checkpoint hold exactly the tensors its config requires?

Runs on safetensors headers only, before any module is built or any weight read, so a wrong
config.json, a truncated download or a different model fails in seconds with a message that names
every missing, mis-shaped, unexpected or non-float tensor (expected vs found shape) instead of
failing deep inside a compile. MTP tensors are recognised and checked for information only: they
are kept for speculative decoding and never make the gate fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from ..config import ModelConfig, TextConfig, load_model_config
from ..errors import CheckpointError
from .expected import Shape, expected_mtp_shapes, expected_text_shapes, expected_vision_shapes
from .layout import MTP, TEXT, VISION, CheckpointLayout, DirectSource, Source, StackedExperts, section_of
from .reader import CheckpointReader

FLOAT_DTYPES = frozenset({"F32", "F16", "BF16", "F64"})
GATE_FIX = ("use the config.json that belongs to these weights (layer count, num_experts, head sizes), or "
            "re-download the missing shards")
_MTP_LAYER = re.compile(r"^mtp\.layers\.(\d+)\.")


def _fmt(shape: Shape | None) -> str:
    return "?" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


@dataclass(frozen=True)
class TensorProblem:
    """One tensor that does not match the config. ``name`` is canonical; ``raw_key`` as stored."""

    name: str
    expected: Shape | None = None
    found: Shape | None = None
    raw_key: str | None = None
    note: str = ""

    def describe(self) -> str:
        where = self.name if self.raw_key in (None, self.name) else f"{self.name} (stored as {self.raw_key})"
        parts = [where]
        if self.expected is not None and self.found is not None:
            parts.append(f"expected {_fmt(self.expected)}, found {_fmt(self.found)}")
        elif self.expected is not None:
            parts.append(f"expected {_fmt(self.expected)}")
        elif self.found is not None:
            parts.append(f"found {_fmt(self.found)}")
        text = ": ".join(parts)
        return f"{text} ({self.note})" if self.note else text


@dataclass
class _Findings:
    missing: list[TensorProblem] = field(default_factory=list)
    mismatched: list[TensorProblem] = field(default_factory=list)
    unexpected: list[TensorProblem] = field(default_factory=list)
    bad_dtype: list[TensorProblem] = field(default_factory=list)

    def lines(self) -> list[str]:
        return ([f"missing: {p.describe()}" for p in self.missing]
                + [f"wrong shape: {p.describe()}" for p in self.mismatched]
                + [f"unexpected: {p.describe()}" for p in self.unexpected]
                + [f"wrong dtype: {p.describe()}" for p in self.bad_dtype])


@dataclass
class GateReport(_Findings):
    """Result of :func:`check_checkpoint`. ``ok`` is False when any list other than the MTP notes is non-empty."""

    checkpoint: str = ""
    layout: str = ""
    sections: tuple[str, ...] = ()
    checked_tensors: int = 0
    mtp_tensors: int = 0
    mtp_notes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)  # the likely cause of a failing gate (config of another size)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mismatched or self.unexpected or self.bad_dtype)

    @property
    def problems(self) -> list[str]:
        """Every failing tensor as one line each (missing, wrong shape, unexpected, wrong dtype)."""
        return self.lines()

    def format(self, max_lines: int = 20) -> str:
        """Human-readable summary; the problem list is cut after ``max_lines`` lines with a count."""
        head = f"checkpoint {self.checkpoint} ({self.layout}; sections {', '.join(self.sections)})"
        if self.ok:
            lines = [f"{head}: OK, {self.checked_tensors} tensors match the config"
                     + (f", {self.mtp_tensors} MTP tensors kept" if self.mtp_tensors else "")]
        else:
            counts = (f"{len(self.missing)} missing, {len(self.mismatched)} wrong shape, "
                      f"{len(self.unexpected)} unexpected, {len(self.bad_dtype)} wrong dtype")
            lines = [f"{head} does not match config.json: {counts}"]
            lines += ["  note: " + n for n in self.hints + self.notes]
            problems = self.problems
            lines += ["  " + line for line in problems[:max_lines]]
            if len(problems) > max_lines:
                lines.append(f"  ... and {len(problems) - max_lines} more")
            lines.append(f"  fix: {GATE_FIX}")
        if self.ok:
            lines += ["  note: " + n for n in self.notes]
        lines += ["  MTP (informational): " + n for n in self.mtp_notes[:5]]
        if len(self.mtp_notes) > 5:
            lines.append(f"  MTP: ... and {len(self.mtp_notes) - 5} more")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line for a failing gate: the first problem (its tensor), the first hint, the fix."""
        problems = self.problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        hint = f"; {self.hints[0]}" if self.hints else ""
        return (f"checkpoint {self.checkpoint} does not match its config.json: {problems[0]}{more}{hint}; "
                f"fix: {GATE_FIX}")

    def raise_if_failed(self, max_lines: int = 20) -> None:
        """One error whose first line is :meth:`summary`, then the full report."""
        if not self.ok:
            raise CheckpointError(f"{self.summary()}\n{self.format(max_lines)}", model_dir=self.checkpoint)

    def __str__(self) -> str:
        return self.format()


def check_checkpoint(
    checkpoint: str | Path | CheckpointReader,
    model_config: ModelConfig | TextConfig | None = None,
    *,
    sections: Iterable[str] | None = None,
) -> GateReport:
    """Compare a checkpoint's tensor headers with what ``model_config`` requires (no tensor data read).

    ``checkpoint`` is a directory or an open :class:`CheckpointReader`; ``model_config`` defaults to the
    directory's config.json. ``sections`` limits the check to "text" and/or "vision" (default: text,
    plus vision when the config has a vision tower).
    """
    reader = checkpoint if isinstance(checkpoint, CheckpointReader) else CheckpointReader(checkpoint)
    if model_config is None:
        model_config = load_model_config(reader.model_dir)
    text, vision = _split_config(model_config)
    wanted = tuple(sections) if sections is not None else ((TEXT, VISION) if vision is not None else (TEXT,))
    bad = set(wanted) - {TEXT, VISION}
    if bad:
        raise ValueError(f"sections must be 'text' and/or 'vision', got {sorted(bad)}")
    layout = CheckpointLayout.from_reader(reader)
    report = GateReport(checkpoint=str(reader.model_dir), layout=layout.describe(), sections=wanted)

    if TEXT in wanted:
        _check_section(report, layout.section(TEXT), expected_text_shapes(text))
        if text.tie_word_embeddings and "lm_head.weight" in layout.sources:
            report.notes.append("lm_head.weight is stored but tie_word_embeddings is true: embed_tokens is used")
    if VISION in wanted:
        if vision is None:
            raise ValueError("sections asks for 'vision' but the config has no vision_config")
        _check_section(report, layout.section(VISION), expected_vision_shapes(vision))
    else:
        skipped = len(layout.section(VISION))
        if skipped:
            report.notes.append(f"{skipped} vision tensors not checked"
                                + (" (config has no vision_config)" if vision is None else ""))
    _check_mtp(report, layout.section(MTP), text)
    _report_leftovers(report, layout, wanted)
    if not report.ok and TEXT in wanted:
        report.hints.extend(_size_hints(layout.section(TEXT), text))
    return report


_TEXT_LAYER = re.compile(r"^layers\.(\d+)\.")


def _size_hints(present: Mapping[str, Source], text: TextConfig) -> list[str]:
    """Plain-words guesses for the usual cause of a failing gate: config.json of another model size."""
    hints = []
    layers = {int(m.group(1)) for name in present if (m := _TEXT_LAYER.match(name))}
    if layers and len(layers) != text.num_hidden_layers:
        hints.append(f"the checkpoint holds {len(layers)} decoder layers, config.json says "
                     f"num_hidden_layers={text.num_hidden_layers}")
    router = present.get("layers.0.mlp.gate.weight")
    if isinstance(router, DirectSource) and router.shape[0] != text.num_experts:
        hints.append(f"the checkpoint's router has {router.shape[0]} experts, config.json says "
                     f"num_experts={text.num_experts}")
    embed = present.get("embed_tokens.weight")
    if isinstance(embed, DirectSource) and embed.shape != (text.vocab_size, text.hidden_size):
        hints.append(f"embed_tokens is {_fmt(embed.shape)}, config.json says vocab_size={text.vocab_size}, "
                     f"hidden_size={text.hidden_size}")
    return hints


def _split_config(model_config: ModelConfig | TextConfig):
    if isinstance(model_config, ModelConfig):
        return model_config.text, model_config.vision
    if isinstance(model_config, TextConfig):
        return model_config, None
    raise TypeError(f"model_config must be a ModelConfig or TextConfig, got {type(model_config).__name__}")


def _check_section(findings: _Findings, present: Mapping[str, Source], expected: Mapping[str, Shape]) -> int:
    """Compare one section; returns how many expected tensors were found intact."""
    intact = 0
    for name, shape in expected.items():
        source = present.get(name)
        if source is None:
            findings.missing.append(TensorProblem(name, expected=shape))
        elif isinstance(source, DirectSource):
            intact += _check_direct(findings, name, source, shape)
        else:
            intact += _check_stacked(findings, source, shape)
    for name, source in present.items():
        if name in expected or name == "lm_head.weight":  # a stored but tied lm_head is only noted
            continue
        if isinstance(source, DirectSource):
            findings.unexpected.append(TensorProblem(name, found=source.shape, raw_key=source.raw_key,
                                                     note="not used by this config"))
        else:
            for expert in sorted(source.parts):
                for proj, part in source.parts[expert].items():
                    findings.unexpected.append(TensorProblem(source.per_expert_name(expert, proj), found=part.shape,
                                                             raw_key=part.raw_key, note="not used by this config"))
    if isinstance(findings, GateReport):
        findings.checked_tensors += intact
    return intact


def _check_direct(findings: _Findings, name: str, source: DirectSource, shape: Shape) -> int:
    if source.shape != shape:
        findings.mismatched.append(TensorProblem(name, expected=shape, found=source.shape, raw_key=source.raw_key))
        return 0
    if source.dtype not in FLOAT_DTYPES:
        findings.bad_dtype.append(TensorProblem(name, raw_key=source.raw_key,
                                                note=f"dtype {source.dtype}, expected one of {sorted(FLOAT_DTYPES)}"))
        return 0
    return 1


def _check_stacked(findings: _Findings, source: StackedExperts, fused: Shape) -> int:
    """Per-expert layout: every expert 0..E-1 must have each projection with the per-expert shape."""
    num_experts = fused[0]
    part_shape = (fused[1] // 2, fused[2]) if len(source.projections) == 2 else tuple(fused[1:])
    ok = True
    for expert in range(num_experts):
        by_proj = source.parts.get(expert, {})
        for proj in source.projections:
            name = source.per_expert_name(expert, proj)
            part = by_proj.get(proj)
            if part is None:
                findings.missing.append(TensorProblem(name, expected=part_shape, note="per-expert layout"))
                ok = False
            else:
                ok = bool(_check_direct(findings, name, part, part_shape)) and ok
    for expert in sorted(e for e in source.parts if not 0 <= e < num_experts):
        for proj, part in source.parts[expert].items():
            findings.unexpected.append(TensorProblem(source.per_expert_name(expert, proj), found=part.shape,
                                                     raw_key=part.raw_key,
                                                     note=f"expert index beyond num_experts={num_experts}"))
    return int(ok)


def _check_mtp(report: GateReport, present: Mapping[str, Source], text: TextConfig) -> None:
    """MTP head: count it and note (never fail on) differences from the config-derived key set."""
    if not present:
        return
    layers = {int(m.group(1)) for name in present if (m := _MTP_LAYER.match(name))}
    expected = expected_mtp_shapes(text, num_layers=max(layers) + 1 if layers else 0)
    findings = _Findings()
    _check_section(findings, present, expected)
    report.mtp_tensors = sum(len(s.raw_keys) if isinstance(s, StackedExperts) else 1 for s in present.values())
    report.mtp_notes.extend(findings.lines())


def _report_leftovers(report: GateReport, layout: CheckpointLayout, wanted: tuple[str, ...]) -> None:
    """Keys with no known prefix, and second copies of a tensor, are unexpected."""
    for raw_key in layout.unrecognised:
        report.unexpected.append(TensorProblem(raw_key, note="no known prefix (model.language_model., model., "
                                                             "lm_head., model.visual., mtp.)"))
    for dup in layout.duplicates:
        section = section_of(dup.canonical)
        problem = TensorProblem(dup.canonical, raw_key=dup.raw_key, note=f"second copy; {dup.kept} is used")
        if section == MTP:
            report.mtp_notes.append(f"duplicate: {problem.describe()}")
        elif section in wanted:
            report.unexpected.append(problem)
