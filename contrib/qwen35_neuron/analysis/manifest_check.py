"""Check the ``neuron`` layer's Neuron-SDK calls against ``neuron/api_manifest.json`` without the SDK.

The SDK cannot be installed on the CPU machines that run CI, so a misspelled keyword (NxDI config
classes swallow unknown keywords with a log line) or a symbol that does not exist at the pinned
release would only surface on trn2. This module parses the source with :mod:`ast`, follows the
import aliases, and compares every SDK import, attribute reference, call keyword and overridden
method signature with the manifest, which was read from the SDK source at the pinned release.

Limits, by design: names rebound through containers or function returns are not followed, and
``**kwargs`` splats are not checked.
"""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

SDK_ROOTS = ("neuronx_distributed_inference", "neuronx_distributed", "torch_neuronx", "nki", "neuronxcc", "torch_xla")
PACKAGE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_MANIFEST = PACKAGE_DIR / "neuron" / "api_manifest.json"
DEFAULT_ROOT = PACKAGE_DIR / "neuron"


@dataclass(frozen=True)
class Finding:
    """One mismatch between the source and the manifest."""

    path: str
    line: int
    code: str
    message: str

    def format(self) -> str:
        return f"{self.path}:{self.line}: [{self.code}] {self.message}"


@dataclass(frozen=True)
class SymbolSpec:
    """A manifest entry: what kind of object it is and the keyword names it accepts."""

    name: str
    kind: str
    params: tuple[str, ...] = ()
    binding: str = "instance"
    members: tuple[str, ...] = ()
    dict_params: dict[str, tuple[str, ...]] = field(default_factory=dict)
    free_override: bool = False

    @property
    def accepts_any_keyword(self) -> bool:
        return any(p.startswith("**") for p in self.params)

    @property
    def keyword_names(self) -> frozenset[str]:
        return frozenset(p for p in self.params if not p.startswith("*"))

    @property
    def max_positional(self) -> int | None:
        """How many positional arguments fit; None when a ``*args`` parameter takes any number."""
        count = 0
        for p in self.params:
            if p == "*" or p.startswith("**"):
                return count
            if p.startswith("*"):
                return None
            count += 1
        return count


@dataclass(frozen=True)
class Manifest:
    """The pinned SDK surface: symbols by dotted path, known modules and re-export aliases."""

    pinned: dict[str, str]
    symbols: dict[str, SymbolSpec]
    modules: frozenset[str]
    aliases: dict[str, str]

    def canonical(self, name: str) -> str:
        for alias, target in self.aliases.items():
            if name == alias or name.startswith(alias + "."):
                return target + name[len(alias):]
        return name

    def is_module(self, name: str) -> bool:
        """A listed module, or a package that contains a listed module or symbol."""
        if name in self.modules:
            return True
        prefix = name + "."
        return any(m.startswith(prefix) for m in self.modules) or any(s.startswith(prefix) for s in self.symbols)

    def lookup(self, name: str) -> SymbolSpec | None:
        return self.symbols.get(self.canonical(name))


@dataclass(frozen=True)
class CheckReport:
    """Result of checking a tree: which files were read, how many SDK references, what failed."""

    files: tuple[str, ...]
    references: int
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings

    def format(self) -> str:
        head = f"manifest check: {len(self.files)} file(s), {self.references} SDK reference(s), " \
               f"{len(self.findings)} finding(s)"
        return "\n".join([head] + [f.format() for f in self.findings])


def load_manifest(path: str | Path | None = None) -> Manifest:
    """Read the manifest JSON (default: the one shipped beside the neuron layer)."""
    raw = json.loads(Path(path or DEFAULT_MANIFEST).read_text())
    symbols = {
        name: SymbolSpec(
            name=name,
            kind=spec["kind"],
            params=tuple(spec.get("params") or ()),
            binding=spec.get("binding", "instance"),
            members=tuple(spec.get("members") or ()),
            dict_params={k: tuple(v) for k, v in (spec.get("dict_params") or {}).items()},
            free_override=spec.get("override") == "free",
        )
        for name, spec in raw["symbols"].items()
    }
    return Manifest(pinned=dict(raw.get("pinned", {})), symbols=symbols,
                    modules=frozenset(raw.get("modules", ())), aliases=dict(raw.get("aliases", {})))


def is_sdk_name(dotted: str) -> bool:
    return dotted.split(".", 1)[0] in SDK_ROOTS


class _Checker(ast.NodeVisitor):
    """Walks one module; scopes map local names to the dotted SDK paths they were bound to."""

    def __init__(self, manifest: Manifest, filename: str) -> None:
        self.manifest = manifest
        self.filename = filename
        self.scopes: list[dict[str, str]] = [{}]
        self.local_sdk_bases: dict[str, str] = {}
        self.findings: list[Finding] = []
        self.references = 0

    # ---- bookkeeping ----
    def _report(self, node: ast.AST, code: str, message: str) -> None:
        self.findings.append(Finding(self.filename, getattr(node, "lineno", 0), code, message))

    def _lookup_name(self, name: str) -> str | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def _resolve(self, node: ast.AST) -> str | None:
        """Dotted SDK path an expression names (``alias.attr.attr``), or None."""
        if isinstance(node, ast.Name):
            return self._lookup_name(node.id)
        if isinstance(node, ast.Attribute):
            base = self._resolve(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def _bind_imports(self, body: Iterable[ast.stmt]) -> None:
        """Bind every import of a block (not of nested defs) before its statements are visited."""
        for stmt in body:
            for node in _walk_same_scope(stmt):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    self._bind_import(node)

    def _bind_import(self, node: ast.Import | ast.ImportFrom) -> None:
        scope = self.scopes[-1]
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    scope[alias.asname] = alias.name
                else:
                    root = alias.name.split(".", 1)[0]
                    scope[root] = root
            return
        if node.level or not node.module:
            return
        for alias in node.names:
            if alias.name != "*":
                scope[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    # ---- checks ----
    def _check_path(self, node: ast.AST, path: str) -> None:
        """The dotted path must be a manifest symbol, a method/member of one, or a known module."""
        self.references += 1
        path = self.manifest.canonical(path)
        if path in self.manifest.symbols or self.manifest.is_module(path):
            return
        parts = path.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            owner = ".".join(parts[:cut])
            spec = self.manifest.symbols.get(owner)
            if spec is not None:
                if spec.kind != "class" or parts[cut] in spec.members:
                    return
                self._report(node, "unknown-symbol",
                             f"{owner} has no method or member {parts[cut]!r} at the pinned release")
                return
            if self.manifest.is_module(owner):
                self._report(node, "unknown-symbol",
                             f"{'.'.join(parts[:cut + 1])} is not in the pinned SDK manifest "
                             f"(module {owner} has no {parts[cut]!r})")
                return
        self._report(node, "unknown-symbol", f"{path} is not in the pinned SDK manifest")

    def _check_call(self, node: ast.Call, path: str) -> None:
        spec = self.manifest.lookup(path)
        if spec is None or spec.kind == "constant":
            return
        name = spec.name
        for kw in node.keywords:
            if kw.arg is None:
                continue
            if not spec.accepts_any_keyword and kw.arg not in spec.keyword_names:
                self._report(kw, "unknown-kwarg", f"{name}() has no parameter {kw.arg!r} at the pinned release")
            allowed = spec.dict_params.get(kw.arg)
            if allowed is not None and isinstance(kw.value, ast.Dict):
                for key in kw.value.keys:
                    if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value not in allowed:
                        self._report(key, "unknown-dict-key",
                                     f"{name}({kw.arg}=...) does not read key {key.value!r}")
        limit = spec.max_positional
        positional = [a for a in node.args if not isinstance(a, ast.Starred)]
        if spec.kind == "method" and spec.binding == "instance":
            limit = None if limit is None else limit + 1  # Class.method(self, ...) form
        if limit is not None and len(positional) > limit and len(positional) == len(node.args):
            self._report(node, "too-many-positional",
                         f"{name}() takes at most {limit} positional argument(s), got {len(positional)}")

    def _check_override(self, cls: ast.ClassDef, method: ast.FunctionDef, base: str) -> None:
        spec = self.manifest.symbols.get(f"{base}.{method.name}")
        if spec is None or spec.kind != "method":
            return
        decorators = {d.id for d in method.decorator_list if isinstance(d, ast.Name)}
        binding = "static" if "staticmethod" in decorators else "class" if "classmethod" in decorators else "instance"
        where = f"{cls.name}.{method.name} overrides {spec.name}"
        if binding != spec.binding:
            self._report(method, "bad-override", f"{where}: NxD binds it as a {spec.binding} method, not {binding}")
            return
        if spec.free_override:
            return
        args = method.args
        positional = [a.arg for a in args.posonlyargs + args.args]
        if binding != "static":
            positional = positional[1:]
        names = set(positional) | {a.arg for a in args.kwonlyargs}
        if args.kwarg is None:
            missing = [p for p in spec.keyword_names if p not in names]
            if missing:
                self._report(method, "bad-override", f"{where}: missing parameter(s) {sorted(missing)}")
        required = positional[:len(positional) - len(args.defaults)]
        extra = [p for p in required if p not in spec.keyword_names]
        if extra and not spec.accepts_any_keyword:
            self._report(method, "bad-override",
                         f"{where}: requires {extra}, which the SDK never passes; give them defaults")

    # ---- visitors ----
    def visit_Module(self, node: ast.Module) -> None:
        self._bind_imports(node.body)
        self.generic_visit(node)

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for deco in node.decorator_list:
            self.visit(deco)
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(default)
        self.scopes.append({})
        self._bind_imports(node.body)
        for stmt in node.body:
            self.visit(stmt)
        self.scopes.pop()

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        sdk_bases = []
        for base in node.bases:
            self.visit(base)
            path = self._resolve(base)
            if path and is_sdk_name(path):
                sdk_bases.append(self.manifest.canonical(path))
            elif isinstance(base, ast.Name) and base.id in self.local_sdk_bases:
                sdk_bases.append(self.local_sdk_bases[base.id])
        if sdk_bases:
            self.local_sdk_bases[node.name] = sdk_bases[0]
        for deco in node.decorator_list:
            self.visit(deco)
        self.scopes.append({})
        for stmt in node.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for base in sdk_bases:
                    self._check_override(node, stmt, base)
            self.visit(stmt)
        self.scopes.pop()

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if is_sdk_name(alias.name):
                self.references += 1
                if not self.manifest.is_module(self.manifest.canonical(alias.name)):
                    self._report(node, "unknown-import", f"module {alias.name} is not in the pinned SDK manifest")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module or not is_sdk_name(node.module):
            return
        for alias in node.names:
            if alias.name == "*":
                self._report(node, "star-import", f"'from {node.module} import *' cannot be checked; name the symbols")
                continue
            full = self.manifest.canonical(f"{node.module}.{alias.name}")
            self.references += 1
            if full not in self.manifest.symbols and not self.manifest.is_module(full):
                self._report(node, "unknown-import", f"{node.module}.{alias.name} is not in the pinned SDK manifest")

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        path = self._resolve(node.value)
        if path and is_sdk_name(path):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.scopes[-1][target.id] = path

    def visit_Attribute(self, node: ast.Attribute) -> None:
        path = self._resolve(node)
        if path and is_sdk_name(path):
            self._check_path(node, path)
            return  # the prefix of the chain is covered by this check
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        path = self._resolve(node.func)
        if path and is_sdk_name(path):
            self._check_call(node, path)


def _walk_same_scope(node: ast.AST) -> Iterable[ast.AST]:
    """ast.walk that does not enter nested functions, lambdas or classes."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        yield from _walk_same_scope(child)


def check_source(source: str, manifest: Manifest, filename: str = "<string>") -> tuple[list[Finding], int]:
    """Findings and the number of SDK references in one module's source text."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as err:
        return [Finding(filename, err.lineno or 0, "syntax-error", str(err.msg))], 0
    checker = _Checker(manifest, filename)
    checker.visit(tree)
    return checker.findings, checker.references


def check_tree(root: str | Path | None = None, manifest: Manifest | None = None) -> CheckReport:
    """Check every ``.py`` file below ``root`` (default: the package's ``neuron`` directory)."""
    root = Path(root or DEFAULT_ROOT)
    manifest = manifest or load_manifest()
    files = sorted(root.rglob("*.py")) if root.is_dir() else []
    findings: list[Finding] = []
    references = 0
    for path in files:
        found, refs = check_source(path.read_text(), manifest, filename=str(path))
        findings.extend(found)
        references += refs
    return CheckReport(files=tuple(str(p) for p in files), references=references, findings=tuple(findings))


def main(argv: list[str] | None = None) -> int:
    """``python -m qwen35_neuron.analysis.manifest_check [ROOT] [--manifest PATH]``; exit 1 on findings.

    Where the NxDI and NxD sources were fetched (``qwen35_neuron.sdk_sources``) the manifest itself is
    checked against them too (:mod:`.manifest_source`); otherwise one line says it was taken as read.
    """
    from .manifest_source import check_against_source, fetched_package_roots

    args = list(sys.argv[1:] if argv is None else argv)
    manifest_path = None
    if "--manifest" in args:
        at = args.index("--manifest")
        manifest_path = args[at + 1]
        del args[at:at + 2]
    manifest = load_manifest(manifest_path)
    report = check_tree(args[0] if args else None, manifest)
    print(report.format())
    roots = fetched_package_roots()
    if roots is None:
        print("manifest vs SDK source: NxDI/NxD sources not fetched here, the manifest is taken as read "
              "(README, 'Test tiers over the real SDK sources')")
        return 0 if report.ok else 1
    checked, findings = check_against_source(manifest, roots)
    print(f"manifest vs SDK source: {checked} NxDI/NxD symbol(s) checked, {len(findings)} finding(s)")
    for finding in findings:
        print(finding.format())
    return 0 if report.ok and not findings else 1


if __name__ == "__main__":
    raise SystemExit(main())
