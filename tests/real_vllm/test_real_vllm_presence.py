"""Says, in any environment, whether the vLLM tier can run here."""

import pytest

from vllm_tier import TIER_ABSENT


def test_vllm_tier_environment():
    if TIER_ABSENT:
        pytest.skip(f"vLLM tier not collected: {TIER_ABSENT}")
