#!/usr/bin/env python
"""Bytes each Neuron graph moves per rank and step, counted op by op: Qwen3.5-35B-A3B against the roofline.

Builds the Neuron layer's token-generation (TKG) and context-encoding (CTE) graphs as NxDI traces them,
at the real 35B-A3B per-rank shapes (TP 4 and 8; TKG batch 1 and 4; cache 4096; CTE 128 and 2048
tokens), on meta tensors (nothing is allocated, no checkpoint needed), and counts the bytes every op
reads and writes. Prints each graph's total beside the roofline's bytes for the same step
(qwen35_neuron.analysis.roofline), their ratio, the bytes by part and the ten costliest ops.

COUNTED UPPER BOUNDS, not measurements: the Neuron compiler fuses some ops (an elementwise chain, a
slice into its consumer), which only lowers the traffic. The last line is
``tkg_bytes_ratio tp4_b1=R`` (TKG, TP 4, batch 1, cache bucket 4096).

Usage: python compile_scripts/bench_graph_bytes.py (no arguments).
"""

from __future__ import annotations

import sys

from qwen35_neuron.analysis import byte_counter, graph_bytes
from qwen35_neuron.analysis.graph_bytes import GraphShape, count_against_roofline, describe, mb
from qwen35_neuron.config.hf_config import parse_model_config
from qwen35_neuron.config.neuron_settings import NeuronSettings, neuron_config_kwargs
from qwen35_neuron.testing.family_configs import QWEN35_35B

CACHE = 4096
TPS = (4, 8)
BATCHES = (1, 4)
CTE_BUCKETS = (128, 2048)


def _rules() -> list[str]:
    doc = byte_counter.__doc__.split("Counting rules", 1)[1].split("\n", 1)[1]
    return ["counting rules:"] + ["  " + line.strip() if not line.startswith("- ") else line
                                 for line in doc.strip().splitlines()]


def main() -> None:
    text = parse_model_config(QWEN35_35B).text
    tkg_buckets = neuron_config_kwargs(NeuronSettings(max_length=CACHE))["token_generation_buckets"]
    print("Qwen3.5-35B-A3B Neuron graphs: bytes moved per rank per step -- COUNTED UPPER BOUNDS, not measurements")
    print("(the compiler fuses some ops, so the real traffic is lower; the roofline is analysis.roofline, modelled)")
    print(f"graphs: {graph_bytes.STAND_IN}")
    print(f"bf16 weights and KV, fp32 DeltaNet state, cache {CACHE} slots; TKG buckets of the default "
          f"NeuronSettings: {tkg_buckets}")
    print("\n".join(_rules()))

    tkg = {}
    for tp in TPS:
        for batch in BATCHES:
            count = count_against_roofline(text, GraphShape("tkg", tp, batch, batch, CACHE, CACHE))
            tkg[tp, batch] = count
            print("\n" + "\n".join(describe(count)))
    sweep = [count_against_roofline(text, GraphShape("tkg", 4, 1, 1, bucket, CACHE)) for bucket in tkg_buckets]
    cte = {}
    for tp in TPS:
        for bucket in CTE_BUCKETS:
            count = count_against_roofline(text, GraphShape("cte", tp, 1, 1, bucket, CACHE))
            cte[tp, bucket] = count
            print("\n" + "\n".join(describe(count)))

    print("\nsummary (counted upper bound / roofline, per rank per step)")
    print(f"  {'graph':<34}{'counted':>14}{'roofline':>14}{'ratio':>8}")
    for (tp, batch), count in tkg.items():
        print(f"  {f'TKG TP {tp} batch {batch} (cache {CACHE})':<34}{mb(count.counted.total_bytes):>14}"
              f"{mb(count.floor_bytes):>14}{count.ratio:>8.2f}")
    for count in sweep:
        label = f"TKG TP 4 batch 1 bucket {count.shape.bucket}"
        print(f"  {label:<34}{mb(count.counted.total_bytes):>14}{mb(count.floor_bytes):>14}{count.ratio:>8.2f}")
    for (tp, bucket), count in cte.items():
        print(f"  {f'CTE TP {tp} {bucket} tokens':<34}{mb(count.counted.total_bytes):>14}"
              f"{mb(count.floor_bytes):>14}{count.ratio:>8.2f}")
    print("anchors (public port, measured on trn2): TPOT 18.4 ms at TP 4, 7.4 ms at TP 8")
    print(f"tkg_bytes_ratio tp4_b1={tkg[4, 1].ratio:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print("error: bench_graph_bytes.py takes no arguments", file=sys.stderr)
        sys.exit(2)
    main()
