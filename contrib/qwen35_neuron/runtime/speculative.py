"""MTP speculative decoding on the CPU engine, with output equal to plain greedy decoding.

Per step and row: the MTP head has drafted K tokens; one verify call runs [last token, K drafts]
(K+1 slots) through the main model, commits each row at 1 + its accepted drafts (DeltaNet state
after exactly those tokens, see :mod:`qwen35_neuron.model.speculative`) and yields the accepted
drafts plus the model's own next token; the MTP head then catches up on the committed positions and
drafts the next K. Rows accept different counts in the same call. Greedy only: every emitted token is
the argmax of the main model's logits at its position, the same logits plain decoding computes.

State design: per-slot states kept inside the verify call (no recompute); attention K/V written
past a row's committed length are invisible and get overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint.loader import iter_mtp_tensors
from ..config import Backend, ModelConfig, RunConfig, TextConfig
from ..decoding.buckets import choose_bucket
from ..decoding.acceptance import AcceptanceStats, check_num_drafts, emit
from ..decoding.rows import GenerationResult, RowState, check_generation, check_prompt, check_rows, decoding_rows
from ..errors import InputError
from ..model.mtp import MtpDrafter, MtpHead
from ..model.state import mtp_state_specs, zero_states
from ..parallel import DenseProvider
from ..parallel.conversion import convert_text_tensor, rank_slice
from ..parallel.providers import SimulatedTPProvider
from .engine import TextEngine, _run_ranks
from .loading import load_engine
from .session import text_rotary_positions

class SpeculativeEngine:
    """A :class:`TextEngine` plus each rank's MTP drafter and the drafter's K/V buffers."""

    def __init__(self, engine: TextEngine, drafters: list[MtpDrafter]) -> None:
        self.engine, self.drafters = engine, drafters
        text, run = engine.text, engine.run
        self.specs = [mtp_state_specs(text, run.batch_size, run.max_seq_len, run.torch_dtype, len(drafters), rank)
                      for rank in range(len(drafters))]
        self.states = [zero_states(specs) for specs in self.specs]

    @classmethod
    def from_state_dict(cls, engine: TextEngine, mtp_state: dict[str, torch.Tensor]) -> "SpeculativeEngine":
        """Drafters sharded like the main layers (``mtp_state``: canonical names without ``mtp.``), built on
        the meta device and given their weights in the run dtype (no second copy)."""
        text, run, tp = engine.text, engine.run, len(engine.models)
        drafters = []
        for rank, model in enumerate(engine.models):
            provider = SimulatedTPProvider(engine.group, rank) if engine.group is not None else DenseProvider()
            with torch.device("meta"):
                head = MtpHead(text, provider, moe_impl=run.moe_impl, chunk_size=run.gdr_chunk_size,
                               moe_block_size=run.moe_block_size)
            head.load_state_dict({name: rank_slice("mtp." + name, convert_text_tensor("mtp." + name, t, text, tp), tp,
                                                   rank).to(run.torch_dtype) for name, t in mtp_state.items()},
                                 strict=True, assign=True)
            head = head.requires_grad_(False).eval()
            drafters.append(MtpDrafter(head, model.embed_tokens, model.lm_head, model.rotary, model.ops))
        return cls(engine, drafters)

    def reset(self) -> None:
        self.engine.reset()
        self.states = [zero_states(specs) for specs in self.specs]

    def prefill(self, input_ids: torch.Tensor, rotary_positions: torch.Tensor, cache_start: torch.Tensor,
                valid_len: torch.Tensor, seq_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Main-model CTE: (logits [B, V] at each row's last real token, normed hidden [B, S, H])."""
        def call(model, states):
            logits, new_states, hidden = model(input_ids, rotary_positions, cache_start, valid_len, seq_ids, states,
                                               return_hidden=True)
            return (logits, hidden), new_states
        return self.engine.run_ranks(call)

    def verify(self, input_ids: torch.Tensor, rotary_positions: torch.Tensor, cache_start: torch.Tensor,
               valid_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Main-model verify step on every row: (logits [B, K+1, V], hidden [B, K+1, H], commit [B])."""
        def call(model, states):
            logits, hidden, commit, new_states = model.speculative_step(input_ids, rotary_positions, cache_start,
                                                                        valid_len, None, states)
            return (logits, hidden, commit), new_states
        return self.engine.run_ranks(call)

    @torch.no_grad()
    def draft(self, tokens: torch.Tensor, hidden: torch.Tensor, cache_start: torch.Tensor, valid_len: torch.Tensor,
              rope_delta: torch.Tensor, seq_ids: torch.Tensor | None, num_drafts: int) -> torch.Tensor:
        """The MTP head's catch-up and chain (:class:`MtpDrafter`) on every rank; drafts [B, num_drafts]."""
        def run_rank(rank: int):
            return self.drafters[rank](tokens, hidden, cache_start, valid_len, rope_delta, seq_ids,
                                       self.states[rank], num_drafts)
        results = _run_ranks(run_rank, len(self.drafters), self.engine.group)
        self.states = [new_states for _, new_states in results]
        return results[0][0]


def load_speculative_engine(model_dir: str | Path, run: RunConfig) -> tuple[ModelConfig, SpeculativeEngine]:
    """The CPU engine of ``model_dir`` with its MTP head; one clear error when the checkpoint has none."""
    if run.backend == Backend.NXD:
        raise InputError("--speculate mtp on Trainium2 goes through qwen35_neuron.neuron, not the CPU engine")
    config, engine = load_engine(model_dir, run)
    return config, SpeculativeEngine.from_state_dict(engine, checked_mtp_state(model_dir, config.text,
                                                                               dtype=run.torch_dtype))


def checked_mtp_state(model_dir: str | Path, text: TextConfig,
                      dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The checkpoint's MTP tensors (names without ``mtp.``), which must be exactly one MTP layer's."""
    return {name[len("mtp."):]: tensor for name, tensor in iter_mtp_tensors(model_dir, text, dtype=dtype)}


class SpeculativeSession:
    """Rows of a :class:`SpeculativeEngine`: prefill new prompts, then verify steps (greedy)."""

    def __init__(self, spec: SpeculativeEngine, num_drafts: int) -> None:
        check_num_drafts(num_drafts)
        self.spec, self.num_drafts = spec, num_drafts
        batch = spec.engine.run.batch_size
        self.rows = [RowState() for _ in range(batch)]
        self.drafts = torch.zeros(batch, num_drafts, dtype=torch.long)
        self.stats = AcceptanceStats(num_drafts)
        self.last_logits: torch.Tensor | None = None  # [rows, V] after prefill, [B, K+1, V] after a step

    def prefill(self, prompts: list[list[int]], rows: list[int] | None = None, *,
                max_new_tokens: int = 0) -> list[int]:
        """Start one request per prompt in ``rows``; returns each row's first token (and drafts K more)."""
        engine = self.spec.engine
        rows = list(range(len(prompts))) if rows is None else list(rows)
        check_rows(rows, len(prompts), len(self.rows))
        for prompt in prompts:
            check_prompt(prompt, engine.text, engine.run, max_new_tokens)
        bucket = choose_bucket(max(len(p) for p in prompts), engine.run.context_buckets)
        input_ids = torch.zeros(len(prompts), bucket, dtype=torch.long)
        for i, prompt in enumerate(prompts):
            input_ids[i, : len(prompt)] = torch.tensor(prompt)
        valid_len = torch.tensor([len(p) for p in prompts])
        start = torch.zeros(len(prompts), dtype=torch.long)
        seq_ids = torch.tensor(rows)
        logits, hidden = self.spec.prefill(input_ids, text_rotary_positions(start, bucket, start), start, valid_len,
                                           seq_ids)
        first = logits.argmax(dim=-1)
        following = torch.cat([input_ids[:, 1:], torch.zeros(len(prompts), 1, dtype=torch.long)], dim=1)
        following[torch.arange(len(prompts)), valid_len - 1] = first  # y_i: the token after slot i
        self.drafts[seq_ids] = self.spec.draft(following, hidden, start, valid_len, start, seq_ids, self.num_drafts)
        self.last_logits = logits
        for row, prompt, token in zip(rows, prompts, first.tolist()):
            self.rows[row] = RowState(length=len(prompt), next_token=token, active=True)
        return first.tolist()

    def step(self) -> list[list[int]]:
        """One verify call for every active row: each row's new tokens (accepted drafts, then the model's
        own), [] for idle rows. A row whose cache is full stops here."""
        capacity = self.spec.engine.run.max_seq_len
        active = decoding_rows(self.rows, capacity)
        width = self.num_drafts + 1
        input_ids = torch.zeros(len(self.rows), width, dtype=torch.long)
        valid = [min(width, capacity - r.length) if a else 0 for r, a in zip(self.rows, active)]
        for b, (row, is_active) in enumerate(zip(self.rows, active)):
            if is_active:
                input_ids[b, 0] = row.next_token
                input_ids[b, 1:] = self.drafts[b]
        cache_start = torch.tensor([r.length for r in self.rows])
        deltas = torch.tensor([r.rope_delta for r in self.rows])
        valid_len = torch.tensor(valid)
        logits, hidden, commit = self.spec.verify(input_ids, text_rotary_positions(cache_start, width, deltas),
                                                  cache_start, valid_len)
        greedy = logits.argmax(dim=-1)
        self.drafts = self.spec.draft(greedy, hidden, cache_start, commit, deltas, None, self.num_drafts)
        self.last_logits = logits
        new_tokens: list[list[int]] = []
        for b, (row, count) in enumerate(zip(self.rows, commit.tolist())):
            if not active[b]:
                new_tokens.append([])
                continue
            self.stats.record(valid[b] - 1, count)
            tokens = greedy[b, :count].tolist()
            row.length += count
            row.next_token = tokens[-1]
            new_tokens.append(tokens)
        return new_tokens

    def finish(self, row: int) -> None:
        self.rows[row].active = False


@dataclass
class SpeculativeResult(GenerationResult):
    acceptance: AcceptanceStats | None = None


def generate_speculative(spec: SpeculativeEngine, prompts: list[list[int]], max_new_tokens: int, num_drafts: int,
                         eos_token_ids: tuple[int, ...] | None = None) -> SpeculativeResult:
    """Greedy generation with MTP drafts: the same tokens as :func:`~.session.generate` (EOS excluded,
    at most ``max_new_tokens`` per row), with acceptance statistics."""
    engine = spec.engine
    check_generation(engine.run.batch_size, len(prompts), max_new_tokens)
    eos = set(engine.text.eos_token_ids if eos_token_ids is None else eos_token_ids)
    spec.reset()
    session = SpeculativeSession(spec, num_drafts)
    count = len(prompts)
    first = session.prefill(prompts, max_new_tokens=max_new_tokens)
    result = SpeculativeResult([[] for _ in range(count)], [[] for _ in range(count)], session.stats)
    pending = [([token], [session.last_logits[row]]) for row, token in enumerate(first)]
    while True:
        for row, (tokens, logits) in enumerate(pending):
            if session.rows[row].active and not emit(result.tokens[row], tokens, eos, max_new_tokens,
                                                     result.logits[row], logits):
                session.finish(row)
        if not any(session.rows[row].active for row in range(count)):
            return result
        step_tokens = session.step()
        pending = [(step_tokens[row], list(session.last_logits[row, : len(step_tokens[row])])) for row in range(count)]
