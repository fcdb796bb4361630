"""The closed-binary shims make up nothing: every placeholder raises naming itself; only the listed
CPU-mode behaviours answer. Runs everywhere (nothing is installed into sys.modules here), plus the one
test that says whether the real-SDK tier runs in this interpreter."""

from __future__ import annotations

import types

import pytest

import shims
from sdk_tier import TIER_ABSENT
from shims.placeholder import Placeholder
from shims.symbols import CPU_MODE, PLACEHOLDERS, CollectivesConfig, kernel_decorator, xla_hlo_call


def test_real_sdk_tier_runs_here():
    if TIER_ABSENT:
        pytest.skip(TIER_ABSENT)
    import neuronx_distributed_inference  # noqa: F401 - importable: the tier's tests were collected

    assert shims.install() != shims.real_sdk_installed()  # shims exactly when the real SDK is absent


@pytest.mark.parametrize("module", sorted(PLACEHOLDERS))
def test_every_placeholder_raises_naming_itself(module):
    built = shims.build_module(module)
    for name in PLACEHOLDERS[module]:
        symbol = getattr(built, name)
        full = f"{module}.{name}"
        assert isinstance(symbol, Placeholder)
        for use in (lambda: symbol(), lambda: symbol(1, key=2), lambda: symbol[0], lambda: symbol.member(),
                    lambda: types.new_class("Sub", (symbol,))()):
            with pytest.raises(NotImplementedError, match=full.replace(".", r"\.")):
                use()
    with pytest.raises(AttributeError):
        getattr(built, "not_listed")


def test_only_the_listed_cpu_mode_behaviours_answer():
    placeholders, behaviours = shims.symbol_count()
    assert (placeholders, behaviours) == (sum(map(len, PLACEHOLDERS.values())), sum(map(len, CPU_MODE.values())))
    assert behaviours == 12
    utils = shims.build_module("torch_neuronx.utils")
    assert utils.get_platform_target() == "trn2"
    assert shims.build_module("torch_xla.core.xla_model").REDUCE_SUM == "sum"
    assert CollectivesConfig([[0, 1], [2, 3]]).rank_src_tgt_pairs[3] == [(2, 3), (3, 2)]
    assert CollectivesConfig([[5]]).rank_src_tgt_pairs == {5: [(5, 5)]}
    skip = shims.build_module("nkilib.core.moe.moe_cte.moe_cte_utils").SkipMode(False, False)
    with pytest.raises(NotImplementedError, match=r"SkipMode\(False, False\)"):
        skip.skip_token()


def test_kernel_decorators_keep_the_kernel_and_never_run_it():
    def kernel(x):
        return x

    jit = kernel_decorator("nki.jit")
    for wrapped in (jit(kernel), jit(mode="trace")(kernel), jit()(kernel)):
        assert wrapped.__wrapped__ is kernel and wrapped.__name__ == "kernel"
        with pytest.raises(NotImplementedError, match=r"nki\.jit\(.*kernel\)"):
            wrapped(1)
        with pytest.raises(NotImplementedError):
            wrapped[2](1)


def test_hlo_calls_run_only_as_module_markers():
    def forward_impl(*args):
        raise AssertionError("the HLO builder body never runs on a CPU")

    forward_impl.__qualname__ = "ModuleMarkerStart.forward_impl"
    forward_impl.__module__ = "neuronx_distributed_inference.models.layer_boundary_marker"
    marker = xla_hlo_call(forward_impl)
    assert marker("a") == "a" and marker("a", "b") == ("a", "b")

    def topk(tensor):
        return tensor

    with pytest.raises(NotImplementedError, match="xla_hlo_call"):
        xla_hlo_call(topk)(1)
