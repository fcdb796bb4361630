"""Drive AWS's own nki-library tests through our NKI emulator (the harness under the conformance tier).

AWS's test files stay unmodified: their input generators, torch references, parameter lists and
tolerances are what runs. What we replace is only the part of their harness that talks to a Neuron
host: `test.utils.test_orchestrator.Orchestrator.execute` compiles and runs on trn2; our
`EmulatorOrchestrator.execute` runs the kernel in the emulator instead (as AWS's own CPU-simulation
mode does: `kernel[lnc](**inputs)`, outputs named in the golden's order) and compares every output
with AWS's `maxAllClose` at the test's rtol/atol. A few packages their harness imports are internal
to AWS or irrelevant here (metrics upload, ssh, plotting); `install_standins` puts inert modules in
their place, except `neuron_dtypes`, whose three functions the input generators use and which is
implemented here. Everything is installed only for the duration of `harness()`.
"""
from __future__ import annotations

import builtins
import contextlib
import inspect
import itertools
import logging
import random
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import ml_dtypes
import numpy as np

from qwen35_neuron.kernels.nki_emulator import dtypes as emu_dtypes, launch_ranks
from qwen35_neuron.kernels.nki_emulator.install import emulator_modules

from nkilib_memory import CaseTooLarge, array_bytes, estimated_need, mem_available_bytes, too_large

# ---- stand-ins ----------------------------------------------------------------------------------


def _as_dtype(dtype: Any) -> np.dtype:
    if isinstance(dtype, np.dtype):
        return dtype
    if isinstance(dtype, type):  # np.float32, ml_dtypes.bfloat16: scalar types
        return np.dtype(dtype)
    return np.dtype(getattr(dtype, "dtype", dtype))


def _static_cast(array: Any, dtype: Any) -> np.ndarray:
    """neuron_dtypes.static_cast: numpy cast with round-to-nearest-even for narrow floats."""
    return np.asarray(array).astype(_as_dtype(dtype))


def _is_float_type(dtype: Any) -> bool:
    d = _as_dtype(dtype)
    return d.kind == "f" or d in (np.dtype(ml_dtypes.bfloat16), np.dtype(ml_dtypes.float8_e4m3),
                                  np.dtype(ml_dtypes.float8_e4m3fn), np.dtype(ml_dtypes.float8_e5m2))


class _Inert:
    """Stands for an AWS-internal class the harness imports but our path never uses."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return _Inert()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _Inert()


class _AllPairs:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("allpairspy is not installed: AWS's pairwise sweeps are not run here")


def _inert_attr(attr: str) -> Any:
    """Any public name of an inert module is the inert class; dunders (`__file__`, which
    `inspect.stack()` reads from every module) stay absent."""
    if attr.startswith("__"):
        raise AttributeError(attr)
    return _Inert


def _module(name: str, inert: bool = True, **attrs: Any) -> types.ModuleType:
    """A module with `attrs`; an inert one answers any other name with an inert class."""
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    if inert:
        mod.__getattr__ = _inert_attr  # PEP 562
    return mod


def _standin_modules(orchestrator_cls: type) -> Dict[str, types.ModuleType]:
    """Modules their harness imports that are AWS-internal (neuron_dtypes), talk to hosts or
    metrics services, or plot; plus their orchestrator, replaced by ours."""
    mods = {
        "neuron_dtypes": _module("neuron_dtypes", inert=False, static_cast=_static_cast, is_float_type=_is_float_type,
                                 sizeinbytes=lambda d: _as_dtype(d).itemsize, finfo=ml_dtypes.finfo,
                                 **{n: getattr(emu_dtypes, n) for n in ("float8_e4m3fn_x4", "float8_e5m2_x4",
                                                                       "float4_e2m1fn_x4")}),
        "allpairspy": _module("allpairspy", AllPairs=_AllPairs),
        "fabric2": _module("fabric2", Connection=_Inert, Config=_Inert),
        "plotext": _module("plotext"),
        "aws_embedded_metrics": _module("aws_embedded_metrics"),
        "aws_embedded_metrics.logger": _module("aws_embedded_metrics.logger"),
        "aws_embedded_metrics.logger.metrics_context": _module(
            "aws_embedded_metrics.logger.metrics_context", MetricsContext=_Inert),
        "aws_embedded_metrics.serializers": _module("aws_embedded_metrics.serializers"),
        "aws_embedded_metrics.serializers.log_serializer": _module(
            "aws_embedded_metrics.serializers.log_serializer", LogSerializer=_Inert),
        # neuronx-cc's legacy annotation names (router_topk imports them; present wherever the SDK is)
        "neuronxcc": _module("neuronxcc", inert=False),
        "neuronxcc.nki": _module("neuronxcc.nki", inert=False),
        "neuronxcc.nki.typing": sys.modules["nki.typing"],
        "test.utils.test_orchestrator": _module("test.utils.test_orchestrator", inert=False, Orchestrator=orchestrator_cls),
    }
    return mods


# ---- running one kernel -------------------------------------------------------------------------


@dataclass
class Check:
    """One `Orchestrator.execute` call: a kernel run and its comparison with the golden."""

    kernel: str
    lnc: int
    outputs: Dict[str, str] = field(default_factory=dict)  # name -> "ok" or the mismatch summary
    error: Optional[str] = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(v.startswith("ok") for v in self.outputs.values())


class EmulatorOrchestrator:
    """Our `Orchestrator`: `execute(kernel_args)` runs the kernel in the emulator and validates it."""

    def __init__(self, max_all_close: Callable[..., bool], trace_mode: Any = None) -> None:
        self.checks: List[Check] = []
        self.held_bytes = 0  # the last case's kernel arrays (inputs, outputs), for the memory guard
        self._max_all_close = max_all_close
        self.trace_mode = trace_mode  # AWS's tests read it: we are its Simulator mode

    def execute(self, kernel_args: Any) -> None:
        func = kernel_args.kernel_func
        lnc = int(kernel_args.compiler_input.logical_nc_config)
        ranks = int(getattr(getattr(kernel_args, "inference_args", None), "collective_ranks", 1) or 1)
        check = Check(getattr(func, "__name__", str(func)), lnc)
        self.checks.append(check)
        inputs = kernel_args.kernel_input or {}
        self._refuse_if_too_large(inputs, kernel_args.validation_args.golden_output, ranks)
        per_rank = [inputs.for_rank(r) if hasattr(inputs, "for_rank") else
                    (inputs if r == 0 else _copied(inputs)) for r in range(ranks)]  # each rank its own HBM
        calls = [((), {k.removesuffix(".must_alias_input"): v for k, v in kw.items()}) for kw in per_rank]
        # a kernel argument may be named `lnc`: pass everything by keyword to the launch
        results, _ = launch_ranks(getattr(func, "fn", func), calls, lnc=lnc, grid_ndim=1)
        golden_gen = kernel_args.validation_args.golden_output
        for rank, result in enumerate(results):
            outputs = [] if result is None else list(result) if isinstance(result, (list, tuple)) else [result]
            if hasattr(golden_gen, "for_rank"):  # PerRankLazyGoldenGenerator
                golden = placeholders = golden_gen.for_rank(rank)
            else:
                placeholders = getattr(golden_gen, "output_ndarray", golden_gen)
                # looked up on the class: hasattr() on the instance would run AWS's lazy reference
                # and hide an AttributeError raised inside it behind a confusing "not subscriptable"
                golden = golden_gen.golden if hasattr(type(golden_gen), "golden") else golden_gen
            names = list(placeholders.keys())
            if len(outputs) != len(names):
                check.error = f"kernel returned {len(outputs)} outputs, the test expects {names}"
                raise AssertionError(check.error)
            tag = f"rank {rank} " if ranks > 1 else ""
            if golden is None:  # the test asked for no validation (e.g. a performance-only case)
                check.outputs.update({f"{tag}{n}": "ok (not validated by the test)" for n in names})
                continue
            for name, out in zip(names, outputs):
                check.outputs[f"{tag}{name}"] = self._compare(name, out, golden[name], placeholders[name],
                                                              kernel_args.validation_args)
        failed = [n for n, v in check.outputs.items() if not v.startswith("ok")]
        if failed:
            raise AssertionError("; ".join(f"{n}: {check.outputs[n]}" for n in failed))

    def _refuse_if_too_large(self, inputs: Any, golden_gen: Any, ranks: int) -> None:
        """Raise CaseTooLarge before the kernel runs when its arrays (inputs and the test's output
        placeholders, once per rank) times the emulator's working factor do not fit in memory."""
        placeholders = getattr(golden_gen, "output_ndarray", None)
        held = array_bytes(inputs.values()) if hasattr(inputs, "values") else 0
        held += array_bytes(placeholders.values()) if isinstance(placeholders, dict) else 0
        self.held_bytes = held * ranks
        why = too_large(estimated_need(self.held_bytes), mem_available_bytes())
        if why:
            raise CaseTooLarge(why)

    def _compare(self, name: str, out: Any, expected: Any, placeholder: Any, validation: Any) -> str:
        if hasattr(expected, "validator"):  # CustomValidatorWithOutputTensorData
            ok = expected.validator(None).validate(np.asarray(out, dtype=expected.dtype))
            return "ok (custom validator)" if ok else "custom validator failed"
        actual = np.asarray(out, dtype=getattr(placeholder, "dtype", None)).astype(np.float32)
        want = np.asarray(expected).astype(np.float32)
        if actual.shape != want.shape:
            return f"shape {actual.shape} != golden {want.shape}"
        rtol, atol = validation.relative_accuracy, validation.absolute_accuracy
        ok = self._max_all_close(actual, want, rtol, atol, verbose=0)
        err = _rel_max_err(actual, want)
        return f"ok (max err {err:.2e} of max|golden|, rtol {rtol:g})" if ok else \
            f"mismatch: max err {err:.2e} of max|golden| > rtol {rtol:g} (atol {atol:g})"


def _copied(inputs: Dict[str, Any]) -> Dict[str, Any]:
    """Another rank's copy of shared test inputs (ranks do not share HBM)."""
    return {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}


def _rel_max_err(a: np.ndarray, b: np.ndarray) -> float:
    finite = np.isfinite(b)
    scale = float(np.max(np.abs(b[finite]))) if finite.any() else 1.0
    with np.errstate(invalid="ignore"):
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(np.nanmax(diff)) / max(scale, 1e-30) if diff.size else 0.0


# ---- collecting AWS's test cases ----------------------------------------------------------------


@dataclass
class Case:
    """One parametrized test function call of AWS's test files."""

    test_id: str
    call: Callable[..., None]
    kwargs: Dict[str, Any]
    fast: bool


def _marks(obj: Any) -> list:
    marks = getattr(obj, "pytestmark", [])
    return list(marks) if isinstance(marks, (list, tuple)) else [marks]


def _excludes_trn2(marks: list) -> bool:
    """`@pytest.mark.platforms(exclude=[..., Platforms.TRN2])`: AWS does not run it on trn2."""
    for m in marks:
        if m.name == "platforms":
            excluded = m.kwargs.get("exclude") or []
            if any(getattr(p, "name", str(p)).upper() == "TRN2" for p in excluded):
                return True
    return False


def _param_sets(mark: Any) -> List[Tuple[Dict[str, Any], str, bool]]:
    """(kwargs, id, fast) per value of one `pytest.mark.parametrize`."""
    names = mark.args[0]
    names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    ids = mark.kwargs.get("ids")
    out = []
    for i, value in enumerate(mark.args[1]):
        fast = False
        if hasattr(value, "values") and hasattr(value, "marks"):  # pytest.param(...)
            fast = any(m.name == "fast" for m in value.marks)
            pid = value.id
            value = value.values
        else:
            pid = None
        vals = tuple(value) if len(names) > 1 else (value,)
        if len(names) > 1 and len(vals) != len(names):
            continue
        if pid is None and isinstance(ids, (list, tuple)) and i < len(ids):
            pid = ids[i]
        if pid is None:
            pid = "-".join(str(getattr(v, "__name__", v)) for v in vals)
        out.append((dict(zip(names, vals)), str(pid), fast))
    return out


def _coverage_sets(mark: Any, generate: Any, extract: Any) -> List[Tuple[Dict[str, Any], str, bool]]:
    params = dict(mark.kwargs)
    coverage = params.pop("coverage", "pairs")
    filt = params.pop("filter", None)
    auto = params.pop("enable_automatic_boundary_tests", True)
    invalid = params.pop("enable_invalid_combination_tests", True)
    params.pop("n_tests_per_boundary_value", None)
    params.pop("max_invalid_tests", None)
    cases = generate(params=params, coverage=coverage, filter_func=filt,
                     enable_automatic_boundary_tests=auto, enable_invalid_combination_tests=invalid)
    names, values, ids = extract(params, cases)
    return [(dict(zip(names, v)), i, False) for v, i in zip(values, ids)]


RANGE_FIXTURE = "range_test_options"  # AWS's ranged tests: cases from @range_test_config


def _range_sets(fn: Any, range_tools: Tuple[Any, str]) -> List[Tuple[Dict[str, Any], str, bool]]:
    """The cases AWS's conftest generates for a `range_test_options` test (pytest_generate_tests:
    RangeTestHarness(config, limit).get_unique_test_cases()), with Python's RNG seeded as their
    NEURON_PYTHONHASHSEED does, so the same cases come out on every run."""
    harness_cls, limit_key = range_tools
    config = getattr(fn, "range_test_config", None)
    if config is None:
        raise ValueError("range_test_options without @range_test_config")
    extra = {limit_key: getattr(fn, limit_key)} if hasattr(fn, limit_key) else {}
    state = random.getstate()
    random.seed(0)
    try:
        ids, configs = harness_cls(config, **extra).get_unique_test_cases()
    finally:
        random.setstate(state)
    return [({RANGE_FIXTURE: c}, str(i), False) for i, c in zip(ids, configs)]


def _request(name: str, callspec_id: str) -> Any:
    return types.SimpleNamespace(node=types.SimpleNamespace(name=name, callspec=types.SimpleNamespace(id=callspec_id)))


def collect(module: Any, fixtures: Dict[str, Any], coverage_tools: Tuple[Any, Any],
            range_tools: Tuple[Any, str]) -> Tuple[List[Case], List[str]]:
    """All parametrized cases of the module's test functions, and the functions not collectable."""
    cases: List[Case] = []
    skipped: List[str] = []
    owners: List[Tuple[str, Any, Any, list]] = []
    for name, obj in vars(module).items():
        if inspect.isclass(obj) and name.startswith("Test") and obj.__module__ == module.__name__:
            inst = obj()
            for fname, fn in vars(obj).items():
                if fname.startswith("test") and callable(fn):
                    owners.append((f"{name}::{fname}", getattr(inst, fname), fn, _marks(obj)))
        elif name.startswith("test") and inspect.isfunction(obj) and obj.__module__ == module.__name__:
            owners.append((name, obj, obj, []))
    for label, bound, fn, class_marks in owners:
        marks = _marks(fn) + class_marks
        fn_fast = any(m.name == "fast" for m in marks)
        if any(m.name in ("skip", "skipif") for m in marks):
            continue
        if _excludes_trn2(marks):
            skipped.append(f"{label}: AWS excludes it on trn2 (pytest.mark.platforms)")
            continue
        groups = []
        wanted = [p for p in inspect.signature(bound).parameters if p not in ("self",)]
        try:
            for m in marks:
                if m.name == "parametrize":
                    groups.append(_param_sets(m))
                elif m.name == "coverage_parametrize":
                    groups.append(_coverage_sets(m, *coverage_tools))
            if RANGE_FIXTURE in wanted:
                groups.append(_range_sets(fn, range_tools))
        except Exception as exc:  # noqa: BLE001 - report and go on with the other tests
            skipped.append(f"{label}: parameters not generated ({type(exc).__name__}: {exc})")
            continue
        for combo in itertools.product(*groups) if groups else [()]:
            kwargs: Dict[str, Any] = {}
            ids, fast = [], fn_fast
            for kw, pid, pfast in combo:
                kwargs.update(kw)
                ids.append(pid)
                fast = fast or pfast
            test_id = f"{label}[{'-'.join(ids)}]"
            if "request" in wanted:  # AWS's tests read only request.node.callspec.id / .name
                kwargs["request"] = _request(label, "-".join(ids))
            missing = [p for p in wanted if p not in kwargs and p not in fixtures]
            if missing:
                skipped.append(f"{label}: needs fixture(s) {missing}")
                break
            for p in wanted:
                if p not in kwargs:
                    kwargs[p] = fixtures[p]
            cases.append(Case(test_id, bound, kwargs, fast))
    return cases, skipped


# ---- the environment --------------------------------------------------------------------------

# Modules d2ad3a5 moved while a test still imports them from the old package: old -> new
# (topk_reduce went from experimental/subkernels to experimental/collectives, files unchanged;
# test_topk_reduce.py still imports experimental.subkernels, which no longer exists).
MOVED_MODULES = {
    "nkilib_src.nkilib.experimental.subkernels.topk_reduce": "nkilib_src.nkilib.experimental.collectives.topk_reduce",
    "nkilib_src.nkilib.experimental.subkernels.topk_reduce_torch":
        "nkilib_src.nkilib.experimental.collectives.topk_reduce_torch",
}


def _alias_moved_modules() -> None:
    """Make each moved module importable under its old name too (only if the old one is absent)."""
    import importlib
    import importlib.util
    for old, new in MOVED_MODULES.items():
        package = old.rsplit(".", 1)[0]
        if importlib.util.find_spec(package.rsplit(".", 1)[0]) is None:
            continue
        try:
            exists = importlib.util.find_spec(old) is not None
        except ModuleNotFoundError:
            exists = False
        if exists:
            continue
        module = importlib.import_module(new)
        if package not in sys.modules:
            sys.modules[package] = _module(package, inert=False, __path__=[])
        sys.modules[old] = module
        setattr(sys.modules[package], old.rsplit(".", 1)[1], module)


@contextlib.contextmanager
def harness(lib_root: Path, extra_roots: Sequence[Path] = ()) -> Iterator[Dict[str, Any]]:
    """Install the emulator as `nki`, the stand-ins, and nki-library's `src` and `test` packages.

    `extra_roots` are trees laid out like nki-library (files from older commits): their
    `experimental` folders join the main tree's packages. Yields the objects the runner needs.
    Everything it put into sys.modules / sys.path is removed on exit.
    """
    saved_modules = dict(sys.modules)
    saved_path = list(sys.path)
    logging.disable(logging.INFO)  # nki-library's kernels log every allocation at INFO
    for name in [n for n in sys.modules if n == "test" or n.startswith("test.")]:
        del sys.modules[name]  # Python's own `test` package would shadow nki-library's
    try:
        sys.modules.update(emulator_modules())
        sys.modules.update(_standin_modules(EmulatorOrchestrator))
        sys.path[:0] = [str(lib_root), str(lib_root / "src")]
        import nkilib_src.nkilib.experimental as lib_exp  # noqa: E402 - after the path is set
        import test.integration.nkilib.experimental as test_exp
        for root in extra_roots:
            lib_exp.__path__.append(str(root / "src/nkilib_src/nkilib/experimental"))
            test_exp.__path__.append(str(root / "test/integration/nkilib/experimental"))
        _alias_moved_modules()
        from test.integration.nkilib.utils.comparators import maxAllClose
        from test.utils.common_dataclasses import Platforms
        # test_qkv_tkg.py at d2ad3a5 names Platforms in a decorator without importing it (its
        # 2.29_release twin ddbca35 imports it): a NameError at import on every platform. Supplying that one
        # name as a builtin lets the file run unmodified.
        builtins.Platforms = Platforms
        from test.utils.coverage_parametrized_tests import extract_parametrize_args, generate_parametrized_test_case
        from test.utils.metrics_collector import NoopMetricsCollector
        from test.utils.ranged_test_harness import RANGE_TEST_LIMIT_NUM_TESTS_ATTR_KEY, RangeTestHarness
        import test.utils.pytest_test_metadata as metadata
        if not hasattr(metadata, "pytest_marks"):  # older test files (GDN) use this class tagger
            metadata.pytest_marks = lambda names: (lambda cls: cls)
        from test.utils.common_dataclasses import TraceMode
        yield {"maxAllClose": maxAllClose, "TraceMode": TraceMode, "Platforms": Platforms, "NoopMetricsCollector": NoopMetricsCollector,
               "coverage_tools": (generate_parametrized_test_case, extract_parametrize_args),
               "range_tools": (RangeTestHarness, RANGE_TEST_LIMIT_NUM_TESTS_ATTR_KEY)}
    finally:
        if hasattr(builtins, "Platforms"):
            del builtins.Platforms
        logging.disable(logging.NOTSET)
        sys.path[:] = saved_path
        for name in list(sys.modules):
            if name not in saved_modules:
                del sys.modules[name]
        sys.modules.update(saved_modules)
