"""The CPU execution engine: one model per rank, its state buffers, and one forward for all ranks.

With ``simulated-tp`` the R rank models run in R threads that meet in the provider's collectives;
every rank's logits are identical and rank 0's are returned. New states replace the old ones only
after every rank succeeded, so a failing call leaves every row as it was.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable, Iterator, Mapping

import torch

from ..config import Backend, RunConfig, TextConfig
from ..config.tp_shapes import check_tp_supported
from ..errors import UnsupportedConfigError
from ..model.model_ops import TORCH_OPS, ModelOps
from ..model.rotary import MultimodalRotary
from ..model.state import state_specs, zero_states
from ..model.text_model import Qwen35TextModel
from ..parallel import DenseProvider, simulated_tp_group
from ..parallel.conversion import convert_text_state_dict, rank_slice


def ops_for_backend(backend: Backend) -> ModelOps:
    if backend == Backend.NKI_SIM:
        from ..kernels.nki_ops import nki_sim_ops  # lazy: the emulator is only needed for this backend

        return nki_sim_ops()
    return TORCH_OPS


Tensors = Iterable[tuple[str, torch.Tensor]] | Mapping[str, torch.Tensor]


def build_rank_models(text: TextConfig, run: RunConfig,
                      tensors: Tensors) -> tuple[list[Qwen35TextModel], object | None]:
    """Rank models of ``run.backend`` with weights from canonical (name, tensor) pairs, and the
    collective group joining them (None for one rank). Ranks are cut from the HF -> Neuron
    conversion's output exactly as NxD cuts it, so simulated TP proves the conversion.

    Memory: the models are built on the meta device (no weights allocated), then each decoder
    layer's tensors are converted, cut per rank, cast to the run dtype and assigned in place
    (``load_state_dict(assign=True)``), one layer at a time. Fed by a stream
    (:func:`~qwen35_neuron.checkpoint.iter_text_tensors` in the run dtype), the process holds the
    weights once plus one layer in flight: never an fp32 copy of a bf16 model.
    """
    if run.backend == Backend.NXD:
        raise UnsupportedConfigError("backend 'nxd' runs on Trainium2: use qwen35_neuron.neuron (compile, load)")
    ops = ops_for_backend(run.backend)
    if run.backend == Backend.SIMULATED_TP:
        check_tp_supported(text, run.tp_degree)
        providers = simulated_tp_group(run.tp_degree)
    else:
        providers = [DenseProvider()]
    tp = len(providers)
    with torch.device("meta"):
        models = [Qwen35TextModel(text, provider, moe_impl=run.moe_impl, chunk_size=run.gdr_chunk_size, ops=ops,
                                  moe_block_size=run.moe_block_size) for provider in providers]
    expected = set(models[0].state_dict())
    loaded: set[str] = set()
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    for group in _by_module(convert_text_state_dict(items, text, tp)):
        for rank, model in enumerate(models):
            pieces = {name: rank_slice(name, t, tp, rank).to(run.torch_dtype) for name, t in group.items()}
            if text.tie_word_embeddings and tp == 1 and "lm_head.weight" in pieces and "embed_tokens.weight" in loaded:
                pieces["lm_head.weight"] = model.embed_tokens.weight.data  # tied: one matrix, as in HF
            unexpected = set(pieces) - expected
            if unexpected:
                raise UnsupportedConfigError(f"tensors {sorted(unexpected)} have no place in the model")
            model.load_state_dict(pieces, strict=False, assign=True)
            del pieces
        loaded.update(group)
        del group  # before the next layer is read: the models hold what they need
    missing = expected - loaded
    if missing:
        raise UnsupportedConfigError(f"no weights for {sorted(missing)[:5]} ({len(missing)} in all)")
    for model in models:
        model.rotary = MultimodalRotary(text)  # its fp32 frequencies, computed for real (the meta build made none)
        model.requires_grad_(False)
    return [model.eval() for model in models], getattr(providers[0], "group", None)


def _by_module(items: Iterable[tuple[str, torch.Tensor]]) -> Iterator[dict[str, torch.Tensor]]:
    """Consecutive tensors of one top-level module (``layers.7``, ``embed_tokens``, ...), grouped."""
    group: dict[str, torch.Tensor] = {}
    owner = None
    for name, tensor in items:
        parts = name.split(".")
        this = ".".join(parts[:2]) if parts[0] == "layers" else parts[0]
        if group and this != owner:
            yield group
            group = {}
        owner = this
        group[name] = tensor
    if group:
        yield group


class TextEngine:
    def __init__(self, text: TextConfig, run: RunConfig, models: list[Qwen35TextModel],
                 group: object | None = None) -> None:
        self.text, self.run, self.models, self.group = text, run, models, group
        self.specs = [state_specs(text, run.batch_size, run.max_seq_len, run.torch_dtype, len(models), rank)
                      for rank in range(len(models))]
        self.states = [zero_states(specs) for specs in self.specs]

    @classmethod
    def from_state_dict(cls, text: TextConfig, run: RunConfig, state_dict: Tensors) -> "TextEngine":
        """From canonical tensors: a dict, or a (name, tensor) stream that is consumed as it goes."""
        return cls(text, run, *build_rank_models(text, run, state_dict))

    def reset(self) -> None:
        self.states = [zero_states(specs) for specs in self.specs]

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, rotary_positions: torch.Tensor, cache_start: torch.Tensor,
                valid_len: torch.Tensor, seq_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None = None,
                all_logits: bool = False) -> torch.Tensor:
        """Run one CTE or TKG call on rows ``seq_ids`` (None: all rows); returns rank 0's logits."""
        if inputs_embeds is not None:
            inputs_embeds = inputs_embeds.to(self.run.torch_dtype)
        return self.run_ranks(lambda model, states: model(input_ids, rotary_positions, cache_start, valid_len,
                                                          seq_ids, states, inputs_embeds=inputs_embeds,
                                                          all_logits=all_logits))

    @torch.no_grad()
    def run_ranks(self, call: Callable[[Qwen35TextModel, list[torch.Tensor]], tuple]) -> object:
        """``call(rank model, rank states) -> (output, new states)`` on every rank; the states are replaced
        only after every rank succeeded. Returns rank 0's output."""
        results = _run_ranks(lambda rank: call(self.models[rank], self.states[rank]), len(self.models), self.group)
        self.states = [new_states for _, new_states in results]
        return results[0][0]


def _run_ranks(fn: Callable[[int], tuple], world: int, group) -> list[tuple]:
    """Run fn(rank) for every rank, in threads when there are several; re-raise the first real
    error after releasing ranks blocked in a collective."""
    if world == 1:
        return [fn(0)]
    results: list[tuple | None] = [None] * world
    errors: list[BaseException] = []

    def target(rank: int) -> None:
        try:
            results[rank] = fn(rank)
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(err)
            group.abort()

    threads = [threading.Thread(target=target, args=(rank,)) for rank in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        group.reset()
        real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
        raise (real or errors)[0]
    return results  # type: ignore[return-value]
