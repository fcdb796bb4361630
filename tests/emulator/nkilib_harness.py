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

import contextlib
import inspect
import itertools
import logging
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import ml_dtypes
import numpy as np

from qwen35_neuron.kernels.nki_emulator import dtypes as emu_dtypes, run_kernel
from qwen35_neuron.kernels.nki_emulator.install import emulator_modules

# ---- stand-ins ----------------------------------------------------------------------------------


def _as_dtype(dtype: Any) -> np.dtype:
    return np.dtype(getattr(dtype, "dtype", dtype)) if not isinstance(dtype, np.dtype) else dtype


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


def _module(name: str, inert: bool = True, **attrs: Any) -> types.ModuleType:
    """A module with `attrs`; an inert one answers any other name with an inert class."""
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    if inert:
        mod.__getattr__ = lambda attr: _Inert  # PEP 562
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

    def __init__(self, max_all_close: Callable[..., bool]) -> None:
        self.checks: List[Check] = []
        self._max_all_close = max_all_close

    def execute(self, kernel_args: Any) -> None:
        func = kernel_args.kernel_func
        lnc = int(kernel_args.compiler_input.logical_nc_config)
        check = Check(getattr(func, "__name__", str(func)), lnc)
        self.checks.append(check)
        inputs = kernel_args.kernel_input or {}
        if not isinstance(inputs, dict):
            check.error = "per-rank inputs (collectives) are outside the emulated subset"
            raise RuntimeError(check.error)
        inputs = {k.removesuffix(".must_alias_input"): v for k, v in inputs.items()}
        result, _ = run_kernel(func, lnc=lnc, **inputs)
        outputs = [] if result is None else list(result) if isinstance(result, (list, tuple)) else [result]
        validation = kernel_args.validation_args
        golden_gen = validation.golden_output
        placeholders = getattr(golden_gen, "output_ndarray", golden_gen)
        names = list(placeholders.keys())
        if len(outputs) != len(names):
            check.error = f"kernel returned {len(outputs)} outputs, the test expects {names}"
            raise AssertionError(check.error)
        golden = golden_gen.golden if hasattr(golden_gen, "golden") else golden_gen
        if golden is None:  # the test asked for no validation (e.g. a performance-only case)
            check.outputs = {n: "ok (not validated by the test)" for n in names}
            return
        for name, out in zip(names, outputs):
            check.outputs[name] = self._compare(name, out, golden[name], placeholders[name], validation)
        failed = [n for n, v in check.outputs.items() if not v.startswith("ok")]
        if failed:
            raise AssertionError("; ".join(f"{n}: {check.outputs[n]}" for n in failed))

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


def collect(module: Any, fixtures: Dict[str, Any], coverage_tools: Tuple[Any, Any]) -> Tuple[List[Case], List[str]]:
    """All parametrized cases of the module's test functions, and the functions not collectable."""
    cases: List[Case] = []
    skipped: List[str] = []
    owners: List[Tuple[str, Any, Any]] = []
    for name, obj in vars(module).items():
        if inspect.isclass(obj) and name.startswith("Test") and obj.__module__ == module.__name__:
            inst = obj()
            for fname, fn in vars(obj).items():
                if fname.startswith("test") and callable(fn):
                    owners.append((f"{name}::{fname}", getattr(inst, fname), fn))
        elif name.startswith("test") and inspect.isfunction(obj) and obj.__module__ == module.__name__:
            owners.append((name, obj, obj))
    for label, bound, fn in owners:
        marks = _marks(fn)
        fn_fast = any(m.name == "fast" for m in marks)
        if any(m.name in ("skip", "skipif") for m in marks):
            continue
        groups = []
        try:
            for m in marks:
                if m.name == "parametrize":
                    groups.append(_param_sets(m))
                elif m.name == "coverage_parametrize":
                    groups.append(_coverage_sets(m, *coverage_tools))
        except Exception as exc:  # noqa: BLE001 - report and go on with the other tests
            skipped.append(f"{label}: parameters not generated ({type(exc).__name__}: {exc})")
            continue
        wanted = [p for p in inspect.signature(bound).parameters if p not in ("self",)]
        for combo in itertools.product(*groups) if groups else [()]:
            kwargs: Dict[str, Any] = {}
            ids, fast = [], fn_fast
            for kw, pid, pfast in combo:
                kwargs.update(kw)
                ids.append(pid)
                fast = fast or pfast
            missing = [p for p in wanted if p not in kwargs and p not in fixtures]
            if missing:
                skipped.append(f"{label}: needs fixture(s) {missing}")
                break
            for p in wanted:
                if p not in kwargs:
                    kwargs[p] = fixtures[p]
            cases.append(Case(f"{label}[{'-'.join(ids)}]", bound, kwargs, fast))
    return cases, skipped


# ---- the environment --------------------------------------------------------------------------


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
        from test.integration.nkilib.utils.comparators import maxAllClose
        from test.utils.common_dataclasses import Platforms
        from test.utils.coverage_parametrized_tests import extract_parametrize_args, generate_parametrized_test_case
        from test.utils.metrics_collector import NoopMetricsCollector
        import test.utils.pytest_test_metadata as metadata
        if not hasattr(metadata, "pytest_marks"):  # older test files (GDN) use this class tagger
            metadata.pytest_marks = lambda names: (lambda cls: cls)
        yield {"maxAllClose": maxAllClose, "Platforms": Platforms, "NoopMetricsCollector": NoopMetricsCollector,
               "coverage_tools": (generate_parametrized_test_case, extract_parametrize_args)}
    finally:
        logging.disable(logging.NOTSET)
        sys.path[:] = saved_path
        for name in list(sys.modules):
            if name not in saved_modules:
                del sys.modules[name]
        sys.modules.update(saved_modules)
