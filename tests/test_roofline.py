"""Capacity / roofline model: parameter counts against transformers and against the published sizes,
and hand-checked per-rank byte counts. All outputs are modelled, not measured."""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.analysis.hardware import GIB, TRN2_3XLARGE, TRN2_48XLARGE
from qwen35_neuron.analysis.model_size import RankShapes, count_params
from qwen35_neuron.analysis.roofline import preset_report, roofline
from qwen35_neuron.config import parse_model_config
from qwen35_neuron.errors import UnsupportedConfigError
from qwen35_neuron.testing.family_configs import QWEN35_35B
from qwen35_neuron.testing.tiny import tiny_config_dict

# Measured on hardware (docs/shared notes): the modelled lower bounds must stay below these.
MEASURED_TPOT_MS = {("trn2.3xlarge", 4): 18.4, ("trn2.48xlarge", 8): 7.4}


@pytest.fixture(scope="module")
def big():
    return parse_model_config(QWEN35_35B)


def test_35b_totals_match_the_name(big):
    counts = count_params(big.text, big.vision)
    assert counts.total == pytest.approx(35e9, rel=0.05)
    assert counts.active == pytest.approx(3e9, rel=0.05)
    # exact values from the config (equal to transformers' own count of the same config)
    assert counts.text_total == 34_660_610_688
    assert counts.vision == 446_571_248
    assert counts.routed_experts == 40 * 256 * 3 * 2048 * 512


def test_counts_equal_transformers_on_a_tiny_config():
    from transformers import Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration

    raw = tiny_config_dict(num_hidden_layers=8)
    with torch.device("meta"):
        hf = Qwen3_5MoeForConditionalGeneration(Qwen3_5MoeConfig.from_dict(raw))
    vision = sum(p.numel() for n, p in hf.named_parameters() if ".visual." in n)
    text = sum(p.numel() for n, p in hf.named_parameters() if ".visual." not in n)
    config = parse_model_config(raw)
    ours = count_params(config.text, config.vision)
    assert (ours.text_total, ours.vision) == (text, vision)


@pytest.mark.parametrize("instance,tp", [("trn2.3xlarge", 4), ("trn2.48xlarge", 8)])
def test_35b_presets(big, instance, tp):
    report = preset_report(big.text, big.vision, instance, max_seq_len=4096, decode_context=512)
    assert report.tp == tp and report.fits
    experts_stored = report.hbm_by_part[f"routed experts (all 256, I/R={512 // tp})"]
    assert experts_stored == 40 * 256 * 3 * 2048 * (512 // tp) * 2
    # decode at batch 1 reads 8 expert shards per layer and every DeltaNet state twice in fp32
    decode = report.decode.bytes_by_part
    assert decode[f"routed experts (8 of 256, I/R={512 // tp})"] == 40 * 8 * 3 * 2048 * (512 // tp) * 2
    assert decode["DeltaNet state fp32 (read + write)"] == 2 * 30 * (32 // tp) * 128 * 128 * 4
    assert decode["KV cache (read 512, write 1)"] == 10 * 2 * 1 * 513 * 256 * 2  # one replicated KV head per rank
    assert report.decode.allreduces == 82 and report.decode.allreduce_bytes == 2048 * 2
    # the bound is memory, and it stays below what hardware measured
    tpot_ms = report.tpot_lower_bound_s * 1e3
    assert report.decode.bound_by == "memory"
    assert 1.0 < tpot_ms < MEASURED_TPOT_MS[(instance, tp)]
    assert report.ttft_lower_bound_s(512) > report.ttft_lower_bound_s(128) > report.tpot_lower_bound_s
    text = report.format()
    assert "modelled (not measured)" in text and f"TP {tp}" in text and "TPOT >=" in text


def test_scaling_with_tp_and_batch(big):
    tp4 = roofline(big.text, hardware=TRN2_48XLARGE, tp=4, decode_context=1024)
    tp8 = roofline(big.text, hardware=TRN2_48XLARGE, tp=8, decode_context=1024)
    w4 = tp4.hbm_by_part["DeltaNet projections"]
    assert tp8.hbm_by_part["DeltaNet projections"] == pytest.approx(w4 / 2, rel=1e-3)
    assert tp8.hbm_total < tp4.hbm_total
    # batch 32 x top-8 covers all 256 experts: decode reads every expert shard once
    b32 = roofline(big.text, hardware=TRN2_3XLARGE, tp=4, batch=32, decode_context=1024)
    assert "routed experts (256 of 256, I/R=128)" in b32.decode.bytes_by_part
    assert b32.tpot_lower_bound_s > tp4.tpot_lower_bound_s
    # KV cache at the maximum length grows linearly with it
    long = roofline(big.text, tp=4, max_seq_len=32768)
    assert long.hbm_by_part["KV cache (10 layers x 32768)"] == 10 * 2 * 1 * 32768 * 256 * 2


def test_rank_shapes_follow_our_sharding(big):
    assert RankShapes.of(big.text, 2).kv_heads == 1      # 2 KV heads over 2 ranks
    assert RankShapes.of(big.text, 8).kv_heads == 1      # replicated up to TP 8
    assert RankShapes.of(big.text, 16).q_heads == 1
    with pytest.raises(UnsupportedConfigError, match="num_attention_heads 16 is not divisible by tp_degree 32"):
        RankShapes.of(big.text, 32)


def test_deltanet_key_heads_replicate_beyond_their_count():
    from qwen35_neuron.testing.family_configs import QWEN35_397B

    shapes = RankShapes.of(parse_model_config(QWEN35_397B).text, 32)  # 16 DeltaNet key heads, TP 32
    assert shapes.linear_key_heads == 1 and shapes.linear_value_heads == 2 and shapes.kv_heads == 1


def test_bad_inputs_are_reported(big):
    with pytest.raises(UnsupportedConfigError, match="4 logical cores"):
        roofline(big.text, hardware=TRN2_3XLARGE, tp=8)
    with pytest.raises(UnsupportedConfigError, match="divide"):
        roofline(big.text, hardware=TRN2_48XLARGE, tp=3)
    with pytest.raises(UnsupportedConfigError, match="max_seq_len"):
        roofline(big.text, tp=4, max_seq_len=1024, decode_context=2048)
    with pytest.raises(UnsupportedConfigError, match="unknown instance"):
        preset_report(big.text, instance="trn1.32xlarge")


def test_hardware_shares():
    assert TRN2_3XLARGE.logical_cores == 4 and TRN2_48XLARGE.logical_cores == 64
    assert TRN2_3XLARGE.rank_hbm_bandwidth == pytest.approx(2.9e12 / 4)
    assert TRN2_3XLARGE.rank_flops == pytest.approx(158e12)
    assert TRN2_3XLARGE.rank_hbm_bytes == 24 * GIB


def test_long_contexts_hold_kv_only_in_the_attention_layers(big):
    """32k / 128k / 262k rows: KV grows in the 10 attention layers only, the DeltaNet state stays
    fixed, and the chunked prefill's TTFT bound counts every chunk reading the KV before it."""
    report = preset_report(big.text, big.vision, "trn2.3xlarge", max_seq_len=4096)
    rows = {row.length: row for row in report.long_contexts}
    assert sorted(rows) == [32768, 131072, 262144] and report.attention_layers == (10, 40)
    full = rows[262144]
    assert full.kv_bytes == 10 * 2 * 1 * 262144 * 256 * 2  # 10 layers x K,V x one KV head per rank x bf16
    assert full.state_bytes == rows[32768].state_bytes
    assert full.hbm_total - rows[32768].hbm_total == pytest.approx(full.kv_bytes - rows[32768].kv_bytes)
    assert len(full.prefill_chunks) == 262144 // 2048 and full.chunk == 2048
    last = full.prefill_chunks[-1]
    assert last.bytes_by_part[f"KV cache read ({262144 - 2048})"] == 10 * 2 * (262144 - 2048) * 256 * 2
    assert last.bytes_by_part["DeltaNet state fp32 (read + write)"] == 2 * 30 * 8 * 128 * 128 * 4
    # TTFT grows faster than the length (attention reads all earlier KV), decode slows with the KV read
    assert full.ttft_lower_bound_s > 8 * rows[32768].ttft_lower_bound_s
    assert full.decode.lower_bound_s > rows[32768].decode.lower_bound_s > report.tpot_lower_bound_s
    # the first chunk is the plain 2048 prefill
    assert full.prefill_chunks[0].lower_bound_s == pytest.approx(report.ttft_lower_bound_s(2048))
    text = report.format()
    assert "long contexts, batch 1 (modelled): KV in the 10 attention layers only (of 40)" in text
    assert "262144" in text


def test_long_contexts_stop_at_the_models_native_length(big):
    report = roofline(big.text, tp=4, long_contexts=(8192, 262144, 524288))
    assert [row.length for row in report.long_contexts] == [8192, 262144]
    with pytest.raises(UnsupportedConfigError, match="positive"):
        roofline(big.text, tp=4, long_contexts=(0,))
