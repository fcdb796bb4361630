"""Images with the NxDI text graphs: the VL orchestrator's host side, the compiled text model.

:class:`NeuronVLSession` has the CPU :class:`~qwen35_neuron.vl.VisionLanguageSession`'s API (prepare,
prefill, prefill_prepared, decode, finish, reset, rows, last_logits, run, text), so
:func:`qwen35_neuron.vl.generate_vl` drives it unchanged. The host side is the ``vl`` package's own:
:func:`~qwen35_neuron.vl.prepare_batch` (placeholder expansion, patch packing, scatter plan, mRoPE ids
and rope deltas) and :func:`~qwen35_neuron.vl.scatter_images` (vision runner + static scatter, here
into zeros). The text model is the loaded :class:`~qwen35_neuron.neuron.model.Qwen35MoeForCausalLM`:

- CTE: ``forward(..., llava_args=cte_inputs(image_embeds, image_mask, rotary_positions))``; the graph
  selects the image embedding at image tokens and uses the mRoPE ids (:mod:`.vl_inputs`);
- TKG: one call over every row with ``llava_args=tkg_inputs(rope deltas)``: rotary = cache position +
  the row's delta. Idle rows carry a zero mask (their state is kept) and a position >= 1, so NxDI
  never mistakes the step for a context encoding (it picks CTE when ``position_ids.min() == 0``).

Every prefill (re)starts its rows, rope delta included: a text request after an image request in
the same row starts from plain text positions. A request may start while others run, whatever the
compiled ``ctx_batch_size``: the rows NxDI adds to pad a partial batch carry an all-zero mask (our
wrapper), so they keep their state. A batch without images passes no ``llava_args`` and runs exactly
the text path (the wrapper supplies the text values). Decoding is greedy: the graphs
return logits (argmax here) or on-device greedy tokens; without logits, ``last_logits`` rows are empty.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..config import ModelConfig, RunConfig, load_model_config
from ..config.neuron_settings import MAX_LENGTH_OPTION
from ..decoding.rows import RowState, advance_rows, check_prompt, check_rows, decoding_rows
from ..errors import InputError, UnsupportedConfigError
from ..vision.preprocess import ImageProcessorConfig, load_image_processor_config
from ..vl import PreparedBatch, VisionRunner, VLRequest, load_vision_tower, prepare_batch, scatter_images, tower_runner
from .generation import decode_mask, right_padded
from .vl_inputs import cte_inputs, tkg_inputs


def host_run_config(settings, vision_buckets: Sequence[int] | None = None) -> RunConfig:
    """The compiled model's shape limits as the host-side RunConfig the ``vl`` package checks against."""
    extra = {"vision_buckets": tuple(vision_buckets)} if vision_buckets else {}
    return RunConfig(batch_size=settings.batch_size, context_buckets=settings.context_buckets,
                     max_seq_len=settings.max_length, dtype=settings.dtype, gdr_chunk_size=settings.gdr_chunk_size,
                     **extra)


class NeuronVLSession:
    """Requests with images on the rows of a loaded NxDI application (greedy decoding)."""

    def __init__(self, model, config: ModelConfig, runner: VisionRunner | None,
                 processor: ImageProcessorConfig | None, vision_buckets: Sequence[int] | None = None) -> None:
        if config.text.hidden_size != model.config.hidden_size or config.text.vocab_size != model.config.vocab_size:
            raise UnsupportedConfigError("the checkpoint config does not describe the compiled text model: pass the "
                                         "ModelConfig of the checkpoint the model was compiled from")
        self.model, self.config, self.runner, self.processor = model, config, runner, processor
        self.text = config.text
        settings = model.config.settings()
        self.run = host_run_config(settings, vision_buckets)
        self.rows = [RowState() for _ in range(self.run.batch_size)]
        self.last_logits: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget every request (NxDI's reset clears a host flag; each prefill zeroes its rows)."""
        self.model.reset()
        self.rows = [RowState() for _ in range(self.run.batch_size)]
        self.last_logits = None

    def prepare(self, requests: Sequence[VLRequest], max_new_tokens: int = 0) -> PreparedBatch:
        """Check and lay out ``requests`` without touching any state (raises InputError)."""
        if self.processor is None and any(r.images for r in requests):
            raise InputError("images were given but this session has no image processor: use a vision-language "
                             "checkpoint (load_neuron_vl_session reads its preprocessor_config.json)")
        return prepare_batch(requests, self.config, self.run, self.processor, self._check_prompt, max_new_tokens,
                             dtype=self.run.torch_dtype)

    def _check_prompt(self, prompt: list[int], max_new_tokens: int) -> None:
        check_prompt(prompt, self.text, self.run, max_new_tokens, MAX_LENGTH_OPTION)

    def prefill(self, requests: Sequence[VLRequest], rows: Sequence[int] | None = None, *,
                max_new_tokens: int = 0) -> list[int]:
        """Start one request per entry of ``requests`` in ``rows`` (default 0..n-1); first token per row."""
        rows = list(range(len(requests))) if rows is None else list(rows)
        check_rows(rows, len(requests), len(self.rows))
        return self.prefill_prepared(self.prepare(requests, max_new_tokens), rows, max_new_tokens=max_new_tokens)

    def cte_llava_args(self, batch: PreparedBatch) -> list[torch.Tensor]:
        """The CTE graph's VL inputs for a batch with images (image embeddings are zeros at text tokens)."""
        if self.runner is None:
            raise InputError("images were given but this session has no vision runner")
        zeros = torch.zeros(len(batch.prompts), batch.width, self.text.hidden_size, dtype=self.run.torch_dtype)
        embeds = scatter_images(self.runner, batch, self.config.vision, zeros)
        return cte_inputs(embeds, batch.plan.is_image, batch.rotary_positions)

    def prefill_prepared(self, batch: PreparedBatch, rows: Sequence[int] | None = None, *,
                         max_new_tokens: int = 0) -> list[int]:
        """:meth:`prefill` for a batch already checked by :meth:`prepare` (with the same max_new_tokens)."""
        rows = list(range(len(batch.prompts))) if rows is None else list(rows)
        check_rows(rows, len(batch.prompts), len(self.rows))
        input_ids, mask, positions = right_padded(batch.prompts)
        llava_args = self.cte_llava_args(batch) if batch.has_images else []
        outputs = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                             seq_ids=torch.tensor(rows, dtype=torch.int32), llava_args=llava_args)
        tokens = self._tokens(outputs, len(rows))
        for row, prompt, token, delta in zip(rows, batch.prompts, tokens, batch.rope_deltas):
            self.rows[row] = RowState(length=len(prompt), rope_delta=delta, next_token=token, active=True)
        return tokens

    def decode(self) -> list[int | None]:
        """One token for every active row (None for idle rows, whose state stays unchanged).
        A row whose cache is full stops here (its request is finished)."""
        active = decoding_rows(self.rows, self.run.max_seq_len)
        lengths = [r.length for r in self.rows]
        input_ids = torch.tensor([[r.next_token if a else 0] for r, a in zip(self.rows, active)], dtype=torch.int32)
        positions = torch.tensor([[max(n, 1)] for n in lengths], dtype=torch.int32)
        outputs = self.model(input_ids=input_ids, attention_mask=decode_mask(lengths, active), position_ids=positions,
                             seq_ids=torch.arange(len(self.rows), dtype=torch.int32),
                             llava_args=tkg_inputs([r.rope_delta for r in self.rows]))
        return advance_rows(self.rows, self._tokens(outputs, len(self.rows)), active)

    def finish(self, row: int) -> None:
        self.rows[row].active = False

    def _tokens(self, outputs, count: int) -> list[int]:
        """Greedy tokens of a call's outputs; keeps the logits that chose them (empty rows without logits)."""
        logits = getattr(outputs, "logits", None)
        if logits is not None:
            self.last_logits = logits[:, -1, :].float()
            return [int(t) for t in self.last_logits.argmax(dim=-1).tolist()]
        self.last_logits = torch.empty(count, 0)
        return [int(t) for t in outputs.tokens.reshape(count, -1)[:, -1].tolist()]


def load_neuron_vl_session(model, *, vision_compiled: str | None = None, runner: VisionRunner | None = None,
                           processor: ImageProcessorConfig | None = None,
                           vision_buckets: Sequence[int] | None = None) -> NeuronVLSession:
    """A session on a loaded application. The vision runner: ``runner``, else the towers compiled in
    ``vision_compiled`` (their buckets become the vision buckets unless given), else the checkpoint's
    tower on the CPU. The checkpoint is the one the text model was compiled from."""
    model_dir = model.config._name_or_path
    config = load_model_config(model_dir)
    if config.vision is not None and runner is None:
        if vision_compiled is not None:
            from .vision_encoder import load_vision_towers  # imports torch_neuronx

            towers = load_vision_towers(vision_compiled, model_dir, run_buckets=vision_buckets)
            runner, vision_buckets = towers.run, vision_buckets or towers.buckets
        else:
            dtype = host_run_config(model.config.settings()).torch_dtype
            runner = tower_runner(load_vision_tower(model_dir, config, dtype))
    if processor is None and config.vision is not None:
        processor = load_image_processor_config(model_dir, config.vision)
    return NeuronVLSession(model, config, runner, processor, vision_buckets)
