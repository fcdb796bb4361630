"""nki-library conformance: AWS's NKI kernels, unmodified, through our emulator, against AWS's references.

Run: `PYTHONPATH=contrib python tests/emulator/nkilib_conformance.py` (no arguments needed). It
needs the nki-library sources under ~/.cache/qwen35-neuron/sources/ (never committed): the tree
`nki-library/` and, beside it, `nki-library-gdn/` holding the GDN kernels of older commits (README,
"nki-library conformance"). Without them it prints one line and exits 0.

Which kernels: every nki-library kernel with a torch reference (`*_torch.py`), plus gdn_tkg, whose
reference lives inline in its test. Which cases: the cases of AWS's own test files that exercise
the kernel, as AWS parametrizes them: their `fast` cases when a file has any, else every case
(gdn_cte and gdn_tkg: every case, `large` ones included), except (a) cases AWS itself skips in
its CPU-simulation mode (shape patterns in the test id, see `AWS_SIMULATION_SKIP`) and (b) cases
past our time budgets (`TOO_SLOW`, each listed with why, and the per-kernel / tier budgets), which
are reported as left out or too slow, never as matched. `--all-shapes` runs every case of
gdn_cte, gdn_tkg and attention_cte with no skips and no budgets; `--start N` resumes a kernel at
its N-th chosen case (`-v` numbers them). A case this machine cannot hold is reported as too large
for this machine, never as matched, and never runs the process out of memory (`nkilib_memory`):
refused up front when its arrays times the emulator's working factor exceed MemAvailable, and
stopped by an address-space cap (MemoryError) when it outgrows what was free when it started
(attention_cte's torch reference at 32768 x 32768 allocates 4 GB score matrices).
A kernel matches when every one of its run cases matches AWS's torch reference within the test's
own rtol/atol under AWS's `maxAllClose`. The last line is `nki-library conformance: N/M kernels match`.

Exit status: 1 when a kernel fails for a reason not documented in `OUTSIDE_SUBSET` (an emulator
defect or a new gap), else 0.
"""
from __future__ import annotations

import os

# One BLAS thread: the emulator multiplies many small tiles, where a multi-threaded BLAS on this
# shared 2-core machine is ~18x slower (as AWS's simulation setup does for its workers). Set
# before numpy is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib
import resource
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "contrib"))

import pytest  # noqa: E402 - AWS's tests call pytest.skip(); its exception marks an AWS skip

from nkilib_harness import Case, EmulatorOrchestrator, collect, harness  # noqa: E402
from nkilib_memory import (GB, CaseTooLarge, address_space_bytes, growth_limit,  # noqa: E402
                           mem_available_bytes, peak_rss_bytes)
from qwen35_neuron.sdk_sources import NKI_LIBRARY, missing_sources_line, source_tree  # noqa: E402

GDN_TREE = "nki-library-gdn"  # GDN kernels of older nki-library commits, laid out like the tree

# AWS's CPU-simulation mode skips cases whose id names one of these sizes
# (nki-library test/utils/simulation_setup.py, _LARGE_SHAPE_PATTERNS).
AWS_SIMULATION_SKIP = ("4096", "5120", "8192", "16384", "32768", "36864")

# Kernels whose failure is an API we document as outside the emulated subset (API.md,
# "Outside the subset"): kernel -> the reason. A kernel listed here that fails for another
# reason, or a kernel not listed that fails, makes the run exit 1.
OUTSIDE_SUBSET: Dict[str, str] = {
    "mlp_proj_mxfp4": "MX microscaling (nc_matmul_mx, quantize_mx, x4 packed dtypes) is trn3-only; "
                      "AWS's tests exclude trn2 for every case",
}

# Kernels that do not match for a reason that is not an API outside the subset (listed so the
# tier stays green; each is reported): kernel -> what stops it.
OPEN_GAPS: Dict[str, str] = {
    "transformer_tkg": "AWS's source at d2ad3a5 cannot be imported: core/mlp/mlp.py, which transformer_tkg "
                       "imports, does not parse (IndentationError at line 203, a docstring merged twice; "
                       "ddbca35 of the same day on the 2.29_release branch parses), so no case can run; all 42 of "
                       "its cases have H = 8192, which AWS's CPU simulation skips anyway",
}

# Test modules of MX variants of kernels that are otherwise in the subset (they import the
# kernel's reference to check an MX-quantized form): module -> why they are not run.
MX_VARIANT_TESTS: Dict[str, str] = {
    "test_rmsnorm_mx_quantize_tkg": "rmsnorm fused with MX quantization (quantize_mx, trn3)",
    "test_moe_bwmm_mx_cte": "moe_cte with MX weights (nc_matmul_mx, trn3)",
}

# Cases we leave out for time (this 2-core machine, ~15 min budget): test-id substring -> why.
TOO_SLOW: Dict[str, str] = {
    "T-14000_V-151936": "cross_entropy over 14000 x 151936 logits runs past the 120 s case limit here",
    "T-2047_V-202408": "cross_entropy over 5 x 2047 x 202408 logits runs past the 120 s case limit here",
}

CASE_TIMEOUT_S = 120         # one AWS test case; longer is stopped and listed as too slow for the
#                              tier (not a mismatch); --all-shapes lifts it
KERNEL_BUDGET_S = 25         # after this many seconds a kernel's remaining cases are left out ...
KERNEL_BUDGET_OVERRIDES_S = {"gdn_cte": 120, "attention_cte": 120}  # ... except these (asked for)
TOTAL_BUDGET_S = 780         # the whole tier (~15 min with imports on this 2-core machine); every
#                              kernel still runs its first case after it

# Kernels whose every test shape was asked for: `--all-shapes` runs all their cases (fast or not,
# AWS's CPU-simulation skips and our time budgets ignored).
ALL_SHAPES_KERNELS = ("gdn_cte", "gdn_tkg", "attention_cte")
# ... of which these run every case by default too (their `large` cases fit the tier: gdn_cte's
# B=32 S=2304 takes ~45 s here); attention_cte's 84 take ~20 min, so only `--all-shapes` runs them.
EVERY_CASE_BY_DEFAULT = ("gdn_cte", "gdn_tkg")

# Kernels expected to match (the runner exits 1 if one of them does not).
MUST_MATCH = (
    "cumsum", "gdn_cte", "gdn_tkg", "rope_hf", "attention_bwd", "attention_cte", "attention_tkg",
    "cascaded_max", "conv1d", "dynamic_elementwise_add", "find_nonzero_indices", "gen_mask_tkg",
    "indexed_flatten", "layernorm", "output_projection_cte", "qkv_tkg", "rmsnorm", "rope",
    "router_topk", "topk_reduce", "attention_block_tkg", "cross_entropy", "moe_block_tkg", "moe_cte",
    "moe_tkg", "output_projection_tkg",
)


@dataclass
class KernelResult:
    name: str
    tests: List[str]
    ran: int = 0
    passed: int = 0
    left_out: List[str] = field(default_factory=list)
    failures: List[str] = field(default_factory=list)
    aws_skipped: List[str] = field(default_factory=list)      # pytest.skip() inside AWS's test body
    timed_out: List[str] = field(default_factory=list)        # stopped at the per-case time limit
    too_large: List[str] = field(default_factory=list)        # refused or stopped: more memory than is free
    aws_test_errors: List[str] = field(default_factory=list)  # AWS's test code failed before the kernel ran
    uncollected: List[str] = field(default_factory=list)      # test functions not run, with why
    case_seconds: List[Tuple[str, float, bool]] = field(default_factory=list)  # (id, seconds, ok)
    seconds: float = 0.0

    @property
    def matches(self) -> bool:
        return self.ran > 0 and self.passed == self.ran


def _kernels(lib: Path, extra: Sequence[Path]) -> Dict[str, List[str]]:
    """kernel name -> AWS test modules (dotted) that exercise it.

    A test module exercises kernel K when it imports K's torch reference (`K_torch`), itself or
    through a common test module it imports (AWS's `test_*_common.py`), and has test functions.
    A test module that imports the references of several kernels (an attention test building
    its mask with gen_mask_tkg's reference) belongs to the one its file name names.
    """
    roots = (lib, *extra)
    test_files = [tf for root in roots for tf in sorted((root / "test" / "integration").rglob("test_*.py"))]
    texts = {tf: tf.read_text() for tf in test_files}
    refs = sorted(ref.stem[: -len("_torch")] for root in roots for ref in (root / "src").rglob("*_torch.py"))

    def imports_ref(text: str, kernel: str) -> bool:
        stem = f"{kernel}_torch"
        return f"{stem} import" in text or f".{stem}." in text or f"import {stem}" in text

    direct = {tf: {k for k in refs if imports_ref(text, k)} for tf, text in texts.items()}
    by_module = {_dotted(tf): tf for tf in test_files}
    tests_by_kernel: Dict[str, List[str]] = {k: [] for k in refs}
    for tf, text in texts.items():
        if "def test" not in text or tf.stem in MX_VARIANT_TESTS:
            continue
        kernels = set(direct[tf])
        for mod, other in by_module.items():
            if other is not tf and (f"from {mod} import" in text or f"import {mod}" in text):
                kernels |= direct[other]
        named = [k for k in kernels if k in tf.stem]
        for k in ([max(named, key=len)] if named and len(kernels) > 1 else kernels):
            tests_by_kernel[k].append(_dotted(tf))
    # gdn_tkg has no *_torch.py: its reference is inline in its test.
    for tf in test_files:
        if tf.name == "test_gdn_tkg.py":
            tests_by_kernel["gdn_tkg"] = [_dotted(tf)]
    return dict(sorted(tests_by_kernel.items()))


def _dotted(test_file: Path) -> str:
    parts = test_file.with_suffix("").parts
    return ".".join(parts[parts.index("test"):])


class CaseTimeout(Exception):
    """A case ran past the tier's per-case limit."""


@contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    def _raise(signum, frame):  # noqa: ANN001
        raise CaseTimeout(f"ran longer than {seconds} s on this machine")
    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@contextmanager
def _memory_cap(available: int) -> Iterator[None]:
    """Cap the address space for one case at what it is now plus `available` (MemAvailable) less
    the reserve, so a case that outgrows the machine raises MemoryError here instead of being
    OOM-killed with the whole run."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = growth_limit(address_space_bytes(), available)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _out_of_memory(exc: BaseException) -> bool:
    """MemoryError (numpy), or torch's allocator failing ("can't allocate memory")."""
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and "allocate memory" in str(exc))


def _select(cases: List[Case]) -> List[Case]:
    fast = [c for c in cases if c.fast]
    return fast if fast else cases


def _leave_out(case: Case) -> Optional[str]:
    if any(p in case.test_id for p in AWS_SIMULATION_SKIP):
        return "AWS skips it in CPU simulation (large shape)"
    for key, why in TOO_SLOW.items():
        if key in case.test_id:
            return why
    return None


def _entry(test_id: str, what: str, width: int = 110) -> str:
    """`id: what`, the (often very long) parametrized id shortened so the reason stays visible."""
    short = test_id if len(test_id) <= width else test_id[: width - 3] + "..."
    return f"{short}: {what}"


def _raised_in_aws_test(exc: BaseException) -> bool:
    """True when the innermost frame of our code or AWS's (standard library and site-packages
    frames skipped) is in AWS's test tree: AWS's test code failed on its own, before its
    kernel was called (e.g. a KeyError in a test helper at this nki-library commit)."""
    frames = [f.filename for f in traceback.extract_tb(exc.__traceback__)
              if "site-packages" not in f.filename and not f.filename.startswith(sys.prefix)]
    return bool(frames) and f"{Path('test') / 'integration'}" in frames[-1] and "harness" not in frames[-1]


def _summarize(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    line = text[0] if text else type(exc).__name__
    tb = traceback.extract_tb(exc.__traceback__)
    where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb)
                  if "nkilib" in f.filename and "harness" not in f.filename), "")
    return (line[:300] + (f" (at {where})" if where else ""))


@dataclass
class Options:
    """How one run chooses and reports cases."""

    verbose: bool = False
    case_filter: Optional[str] = None  # only cases whose id contains this (no budgets)
    all_shapes: bool = False           # ALL_SHAPES_KERNELS: every case, no skips, no budgets
    show_traceback: bool = False
    deadline: float = float("inf")     # the tier's total budget (perf_counter time)
    case_timeout: int = CASE_TIMEOUT_S
    start: int = 1                     # skip each kernel's chosen cases before this 1-based index


def _why_left_out(name: str, case: Case, started: float, ran_any: bool, opts: Options) -> Optional[str]:
    if opts.case_filter is not None:
        return None if opts.case_filter in case.test_id else "not chosen"
    if opts.all_shapes and name in ALL_SHAPES_KERNELS:
        return None
    why = _leave_out(case)
    budget = KERNEL_BUDGET_OVERRIDES_S.get(name, KERNEL_BUDGET_S)
    if why is None and ran_any and time.perf_counter() - started > budget:
        why = f"over this kernel's {budget} s time budget"
    if why is None and ran_any and time.perf_counter() > opts.deadline:
        why = f"over the tier's {TOTAL_BUDGET_S} s time budget"
    return why


def _run_case(case: Case, orchestrator: EmulatorOrchestrator, result: KernelResult, opts: Options) -> str:
    """Run one AWS test case and file its outcome in `result`; returns a one-line status."""
    checks_before = len(orchestrator.checks)
    available = mem_available_bytes()
    try:
        with _time_limit(opts.case_timeout), _memory_cap(available):
            case.call(**case.kwargs)
        result.ran += 1
        result.passed += 1
        return "ok"
    except BaseException as exc:  # noqa: BLE001 - AssertionError, rule errors, gaps alike
        if isinstance(exc, KeyboardInterrupt):
            raise
        status = _summarize(exc)
        if opts.show_traceback:
            traceback.print_exception(exc)
        if isinstance(exc, pytest.skip.Exception):
            result.aws_skipped.append(_entry(case.test_id, status))
            return "skipped by AWS's test"
        if isinstance(exc, CaseTooLarge):
            result.too_large.append(_entry(case.test_id, str(exc)))
            return str(exc)
        if _out_of_memory(exc):
            why = (f"too large for this machine (needs more than the {growth_limit(0, available) / GB:.1f} GB "
                   f"it may grow by, {available / GB:.1f} GB available): {status}")
            result.too_large.append(_entry(case.test_id, why))
            return why
        if isinstance(exc, CaseTimeout):
            result.timed_out.append(_entry(case.test_id, status))
            return f"too slow for the tier: {status}"
        if len(orchestrator.checks) == checks_before and _raised_in_aws_test(exc):
            result.aws_test_errors.append(_entry(case.test_id, status))
            return f"AWS's test failed before calling the kernel: {status}"
        result.ran += 1
        result.failures.append(_entry(case.test_id, status))
        return status


def run_kernel_cases(name: str, modules: List[str], env: Dict, opts: Options) -> KernelResult:
    result = KernelResult(name, modules)
    start = time.perf_counter()
    fixtures = {"platform_target": env["Platforms"].TRN2,
                "collector": env["NoopMetricsCollector"]() if env.get("NoopMetricsCollector") else None}
    for dotted in modules:
        try:
            module = importlib.import_module(dotted)
        except Exception as exc:  # noqa: BLE001 - an import failure is this kernel's result
            result.failures.append(f"{dotted}: import failed: {_summarize(exc)}")
            continue
        orchestrator = EmulatorOrchestrator(env["maxAllClose"], env["TraceMode"].Simulator)
        fixtures["test_manager"] = orchestrator
        cases, uncollected = collect(module, fixtures, env["coverage_tools"], env["range_tools"])
        result.uncollected += uncollected
        every = name in EVERY_CASE_BY_DEFAULT or (opts.all_shapes and name in ALL_SHAPES_KERNELS)
        chosen = cases if every else _select(cases)
        for index, case in enumerate(chosen, start=1):
            if index < opts.start:
                continue
            why = _why_left_out(name, case, start, result.ran + len(result.aws_test_errors) > 0, opts)
            if why == "not chosen":
                continue
            if why in TOO_SLOW.values():
                result.timed_out.append(_entry(case.test_id, f"listed as too slow: {why}"))
                continue
            if why:
                result.left_out.append(_entry(case.test_id, why))
                continue
            t0 = time.perf_counter()
            status = _run_case(case, orchestrator, result, opts)
            result.case_seconds.append((case.test_id, time.perf_counter() - t0, status == "ok"))
            if opts.verbose:
                print(f"    {time.perf_counter() - t0:6.1f}s #{index} {case.test_id}: {status} "
                      f"(arrays {getattr(orchestrator, 'held_bytes', 0) / GB:.2f} GB, "
                      f"peak RSS so far {peak_rss_bytes() / GB:.2f} GB)", flush=True)
    result.seconds = time.perf_counter() - start
    return result


def run(kernels: Optional[Sequence[str]] = None, opts: Optional[Options] = None) -> List[KernelResult]:
    """Run the conformance tier; `kernels` limits it to those names (default: all)."""
    opts = opts or Options()
    lib = source_tree(NKI_LIBRARY)
    gdn = source_tree(GDN_TREE)
    extra = [gdn] if gdn else []
    table = _kernels(lib, extra)
    order = [n for n in MUST_MATCH if n in table] + [n for n in table if n not in MUST_MATCH]
    opts.deadline = time.perf_counter() + TOTAL_BUDGET_S
    results = []
    with harness(lib, extra) as env:
        for name in order:
            modules = table[name]
            if kernels and name not in kernels:
                continue
            if opts.verbose:
                print(f"  {name} ({', '.join(m.rsplit('.', 1)[-1] for m in modules) or 'no test file'})", flush=True)
            results.append(run_kernel_cases(name, modules, env, opts))
    return results


def report(results: List[KernelResult]) -> List[str]:
    lines = []
    for r in results:
        state = "match" if r.matches else ("FAIL" if r.ran else "not run")
        extra = [f"{len(r.left_out)} left out"] if r.left_out else []
        extra += [f"{len(r.aws_skipped)} skipped by AWS's test"] if r.aws_skipped else []
        extra += [f"{len(r.timed_out)} too slow"] if r.timed_out else []
        extra += [f"{len(r.too_large)} too large for this machine"] if r.too_large else []
        extra += [f"{len(r.aws_test_errors)} AWS test errors"] if r.aws_test_errors else []
        lines.append(f"{r.name:<34} {state:<8} {r.passed}/{r.ran} cases  {r.seconds:6.1f}s"
                     + (f"  ({', '.join(extra)})" if extra else ""))
        why = OUTSIDE_SUBSET.get(r.name)
        if why and not r.matches:
            lines.append(f"    outside the emulated subset: {why}")
        gap = OPEN_GAPS.get(r.name)
        if gap and not r.matches:
            lines.append(f"    does not match: {gap}")
        for f in r.failures[:3]:
            lines.append(f"    {f}")
        for t in r.timed_out[:2]:
            lines.append(f"    too slow for the tier: {t}")
        for t in r.too_large[:3]:
            lines.append(f"    {t}")
        if r.aws_test_errors:  # AWS's own test code failing (on any platform), shown so it is seen
            lines.append(f"    AWS's test fails before calling the kernel: {r.aws_test_errors[0]}")
        if not r.tests:
            lines.append("    no AWS test file uses this reference")
        if not r.ran:
            for u in r.uncollected[:3]:
                lines.append(f"    not collected: {u}")
    n = sum(r.matches for r in results)
    lines.append(f"nki-library conformance: {n}/{len(results)} kernels match")
    return lines


def unexplained(results: List[KernelResult]) -> List[str]:
    """Kernels that must match but do not, or fail without a documented reason (either list)."""
    return [r.name for r in results if not r.matches and
            (r.name in MUST_MATCH or (r.name not in OUTSIDE_SUBSET and r.name not in OPEN_GAPS))]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", action="append", help="run only this kernel (repeatable)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case as it runs")
    parser.add_argument("--case", help="run only the cases whose id contains this text (no time budgets)")
    parser.add_argument("--traceback", action="store_true", help="print each failure's full traceback")
    parser.add_argument("--start", type=int, default=1, metavar="N",
                        help="skip each kernel's chosen cases before the N-th (1-based; with -v each case shows its #)")
    parser.add_argument("--all-shapes", action="store_true",
                        help=f"run every case of {', '.join(ALL_SHAPES_KERNELS)} (no skips, no budgets)")
    args = parser.parse_args(argv)
    if source_tree(NKI_LIBRARY) is None or source_tree(GDN_TREE) is None:
        print(missing_sources_line("nki-library conformance", [NKI_LIBRARY, GDN_TREE]))
        return 0
    results = run(args.kernel, Options(verbose=args.verbose, case_filter=args.case, all_shapes=args.all_shapes,
                                       show_traceback=args.traceback, start=args.start,
                                       case_timeout=24 * 3600 if args.all_shapes else CASE_TIMEOUT_S))
    print("\n".join(report(results)))
    bad = unexplained(results)
    if bad:
        print(f"unexplained failures (emulator defects or undocumented gaps): {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
