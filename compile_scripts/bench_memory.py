#!/usr/bin/env python
"""Memory benchmark: what loading and converting a real-size bf16 checkpoint adds to a process.

    python compile_scripts/bench_memory.py

Builds a random bf16 Qwen3.5-MoE checkpoint of about 1.8 GB in a temporary directory (removed at
the end), then measures, each case in fresh Python processes (the worst of three), the peak resident memory (RSS)
above the RSS the process had just before the work began:

(a) ``load``: the CPU runtime (``load_engine``, dense, bf16) plus one generate step (a prefill and
    one decode step); reported as that peak / checkpoint bytes (goal <= 1.15: the weights once);
(b) ``convert``: the HF -> Neuron conversion at TP 4, written as NxD's four per-rank files
    (``write_rank_checkpoints``, what ``compile`` runs); reported as that peak / bytes of the
    largest decoder layer (goal <= 1: one layer in flight);
(c) for reference, ``get_state_dict``: the whole converted checkpoint as one dict, which NxDI's
    shard-at-load and CPU paths ask for (not a goal).

The peak is the kernel's own high-water mark (VmHWM, reset through /proc/self/clear_refs just
before the work), or RSS sampled every millisecond where that reset is unavailable. The last line
is ``peak_rss load_ratio=A convert_layers=B``. A benchmark, not a test: the figures are measured
on this machine in this run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# hidden 1024, 8 layers (6 DeltaNet + 2 attention), 64 experts top 4: 1.8 GB in bf16, every layer ~213 MB
BENCH_CONFIG = dict(vocab_size=32000, hidden_size=1024, num_hidden_layers=8, num_attention_heads=8,
                    num_key_value_heads=2, head_dim=128, linear_num_key_heads=4, linear_num_value_heads=8,
                    linear_key_head_dim=128, linear_value_head_dim=128, num_experts=64, num_experts_per_tok=4,
                    moe_intermediate_size=512, shared_expert_intermediate_size=512, max_position_embeddings=4096)
TP = 4
RUNS = 3  # fresh processes per case; the worst peak counts (thread timing moves it by a block or two)
GOALS = {"load": 1.15, "convert": 1.0}
_LAYER = re.compile(r"^(?:model\.)?(?:language_model\.)?layers\.(\d+)\.")


# ---- measuring, inside the worker process ----

def _status(field: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(match.group(1)) * 1024


class PeakRss:
    """Peak RSS of this process from now on: the kernel's high-water mark after resetting it, or, where
    the reset is refused, a sampler thread."""

    def __init__(self) -> None:
        self.before = _status("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self._sampled = None
        except OSError:
            self._sampled = [self.before]
            self._stop = threading.Event()
            threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self._sampled.append(max(self._sampled.pop(), _status("VmRSS")))

    def peak(self) -> int:
        if self._sampled is None:
            return _status("VmHWM")
        self._stop.set()
        return max(self._sampled[-1], _status("VmRSS"))


def worker(case: str, model_dir: str, out_dir: str) -> dict:
    import torch

    from qwen35_neuron.checkpoint import iter_text_tensors
    from qwen35_neuron.checkpoint.expected import expected_text_shapes
    from qwen35_neuron.config import RunConfig, load_model_config

    text = load_model_config(model_dir).text
    started = time.perf_counter()
    if case == "load":
        from qwen35_neuron.runtime.loading import load_engine
        from qwen35_neuron.runtime.session import generate

        run = RunConfig(dtype="bfloat16", batch_size=1, context_buckets=(16,), max_seq_len=32)
        meter = PeakRss()
        _, engine = load_engine(model_dir, run)
        generate(engine, [[11, 42, 7, 99, 3]], 2, eos_token_ids=())  # prefill + one decode step
    elif case == "convert":
        from qwen35_neuron.neuron_layout.rank_files import write_rank_checkpoints

        meter = PeakRss()
        write_rank_checkpoints(iter_text_tensors(model_dir, text, dtype=torch.bfloat16), expected_text_shapes(text),
                               text, TP, out_dir, dtype=torch.bfloat16)
    elif case == "get_state_dict":
        from qwen35_neuron.neuron_layout.layout import neuron_checkpoint, tie_lm_head

        meter = PeakRss()
        state = tie_lm_head(dict(neuron_checkpoint(iter_text_tensors(model_dir, text, dtype=torch.bfloat16),
                                                   text, TP)))
        del state
    else:
        raise SystemExit(f"unknown case {case!r}")
    return {"before": meter.before, "peak": meter.peak(), "seconds": time.perf_counter() - started}


# ---- the driver ----

def checkpoint_sizes(model_dir: Path) -> tuple[int, int]:
    """(bytes of every tensor, bytes of the largest decoder layer) from the header."""
    from qwen35_neuron.checkpoint.safetensors_file import read_header

    infos = read_header(model_dir / "model.safetensors")
    layers: dict[int, int] = {}
    for key, info in infos.items():
        match = _LAYER.match(key)
        if match:
            layers[int(match.group(1))] = layers.get(int(match.group(1)), 0) + info.nbytes
    return sum(info.nbytes for info in infos.values()), max(layers.values())


def run_case(case: str, model_dir: Path, out_dir: Path) -> dict:
    """The worst of :data:`RUNS` fresh worker processes (largest peak above its own baseline)."""
    runs = []
    for _ in range(RUNS):
        done = subprocess.run([sys.executable, __file__, "--worker", case, str(model_dir), str(out_dir)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the {case} worker failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return max(runs, key=lambda r: r["peak"] - r["before"])


def main() -> int:
    from qwen35_neuron.testing import build_streamed_checkpoint, tiny_config_dict

    mb = 1024 ** 2
    with tempfile.TemporaryDirectory(prefix="qwen35-bench-memory-") as tmp:
        model_dir, out_dir = Path(tmp) / "checkpoint", Path(tmp) / "weights"
        started = time.perf_counter()
        build_streamed_checkpoint(model_dir, tiny_config_dict(**BENCH_CONFIG), seed=0)
        total, layer = checkpoint_sizes(model_dir)
        print(f"checkpoint: {total / mb:.0f} MiB bf16 ({BENCH_CONFIG['num_hidden_layers']} layers, "
              f"{BENCH_CONFIG['num_experts']} experts), largest layer {layer / mb:.0f} MiB; built in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        results = {case: run_case(case, model_dir, out_dir) for case in ("load", "convert", "get_state_dict")}
    added = {case: r["peak"] - r["before"] for case, r in results.items()}
    load_ratio, convert_layers = added["load"] / total, added["convert"] / layer
    for case, what, ratio, unit in (
            ("load", "(a) CPU load (bf16, dense) + one generate step", load_ratio, "x the checkpoint"),
            ("convert", f"(b) conversion to NxD's TP {TP} rank files", convert_layers, "x the largest layer"),
            ("get_state_dict", "(c) the whole converted dict (NxDI shard-at-load / CPU path)",
             added["get_state_dict"] / total, "x the checkpoint")):
        r = results[case]
        goal = f" (goal <= {GOALS[case]})" if case in GOALS else ""
        print(f"{what}: RSS {r['before'] / mb:.0f} MiB before, peak +{added[case] / mb:.0f} MiB = {ratio:.2f}"
              f"{unit}{goal}; {r['seconds']:.1f} s", flush=True)
    print(f"peak_rss load_ratio={load_ratio:.2f} convert_layers={convert_layers:.2f}")
    return 0 if load_ratio <= GOALS["load"] and convert_layers <= GOALS["convert"] else 1


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        print(json.dumps(worker(*sys.argv[2:])))
        sys.exit(0)
    if len(sys.argv) > 1:
        print("error: bench_memory.py takes no arguments", file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
