"""The API manifest against the SDK's own Python source, where that source is on this machine.

``neuron/api_manifest.json`` was read by hand from NxDI / NxD at the pinned release; the manifest check
(:mod:`.manifest_check`) holds our neuron layer to it. This module holds the manifest to the source: for
every NxDI / NxD symbol it lists, the definition must exist in the source tree (module, class, function,
method or module-level constant, following ``from x import y`` re-exports and base classes), have the
kind and binding (static / class / instance) the manifest says, and accept every keyword the manifest
lists - as a named parameter, a dataclass field, or a name the function reads from its ``**kwargs``
(``kwargs.pop("name")`` / ``.get`` / ``["name"]``, as NxDI's config classes do), through ``super()``
chains of ``*args, **kwargs`` constructors. Closed packages (torch_neuronx, nki) have no source and are
not checked. Read with :mod:`ast` only: nothing of the SDK is imported.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .manifest_check import Finding, Manifest, SymbolSpec

OPEN_PACKAGES = ("neuronx_distributed_inference", "neuronx_distributed")
MAX_DEPTH = 8  # re-export and base-class hops followed before giving up


@dataclass(frozen=True)
class Definition:
    """Where a symbol is defined: its node and the module (dotted) it sits in."""

    node: ast.AST
    module: str


class SourceTree:
    """The ``src/`` packages of the open SDK repositories, parsed on demand."""

    def __init__(self, package_roots: dict[str, Path]) -> None:
        self.package_roots = package_roots  # "neuronx_distributed" -> .../src/neuronx_distributed
        self._parsed: dict[str, ast.Module | None] = {}

    def module_file(self, module: str) -> Path | None:
        package, _, rest = module.partition(".")
        root = self.package_roots.get(package)
        if root is None:
            return None
        base = root.joinpath(*rest.split(".")) if rest else root
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return path
        return None

    def module_ast(self, module: str) -> ast.Module | None:
        if module not in self._parsed:
            path = self.module_file(module)
            self._parsed[module] = ast.parse(path.read_text(), filename=str(path)) if path else None
        return self._parsed[module]

    def split(self, dotted: str) -> tuple[str, list[str]] | None:
        """(longest module prefix with a source file, the attribute path after it)."""
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            module = ".".join(parts[:cut])
            if self.module_file(module) is not None:
                return module, parts[cut:]
        return None

    def top_level(self, module: str, name: str, depth: int = 0) -> Definition | None:
        """``name`` defined (or re-exported) at the top level of ``module``."""
        tree = self.module_ast(module)
        if tree is None or depth > MAX_DEPTH:
            return None
        for node in _top_level_statements(tree):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                return Definition(node, module)
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and name in _assigned_names(node):
                return Definition(node, module)
        for node in _top_level_statements(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        source = _absolute(module, node, self.module_file(module))
                        found = self.top_level(source, alias.name, depth + 1)
                        if found is None and self.module_file(f"{source}.{alias.name}") is not None:
                            return Definition(node, f"{source}.{alias.name}")  # a submodule
                        return found
        return None

    def resolve(self, dotted: str) -> Definition | None:
        """The definition of a manifest symbol (a module, a top-level name or a class member)."""
        split = self.split(dotted)
        if split is None:
            return None
        module, attrs = split
        if not attrs:
            return Definition(self.module_ast(module), module)
        found = self.top_level(module, attrs[0])
        for attr in attrs[1:]:
            if found is None or not isinstance(found.node, ast.ClassDef):
                return None
            found = self.member(found, attr)
        return found

    def bases(self, cls: Definition, depth: int = 0) -> Iterator[Definition]:
        """The class's bases that are defined in the source tree, nearest first (depth-first)."""
        if depth > MAX_DEPTH:
            return
        for base in cls.node.bases:
            found = self._name_in_module(cls.module, base)
            if found is not None and isinstance(found.node, ast.ClassDef):
                yield found
                yield from self.bases(found, depth + 1)

    def member(self, cls: Definition, name: str) -> Definition | None:
        """A method or class attribute of ``cls`` or of one of its bases in the source tree."""
        for owner in (cls, *self.bases(cls)):
            for node in owner.node.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                    return Definition(node, owner.module)
                if isinstance(node, (ast.Assign, ast.AnnAssign)) and name in _assigned_names(node):
                    return Definition(node, owner.module)
        return None

    def _name_in_module(self, module: str, expr: ast.expr) -> Definition | None:
        if isinstance(expr, ast.Name):
            return self.top_level(module, expr.id)
        if isinstance(expr, ast.Attribute):
            dotted = _dotted(expr)
            return self.resolve(dotted) if dotted else None
        return None

    def accepted_names(self, definition: Definition, owner: Definition | None = None) -> set[str] | None:
        """Keyword names a call of this function / class accepts; None when it takes any keyword.
        ``owner``: the class a method belongs to (for ``self.method(kwargs)`` forwarding)."""
        node = definition.node
        if isinstance(node, ast.ClassDef):
            return self._class_names(definition)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names = _parameter_names(node) - {"self", "cls"}
            if node.args.kwarg is None:
                return names
            read = self._kwargs_names(definition, node.args.kwarg.arg, owner, 0)
            return names | read if read else None
        return set()

    def _class_names(self, cls: Definition) -> set[str] | None:
        names: set[str] = set()
        for owner in (cls, *self.bases(cls)):
            names |= _dataclass_fields(owner.node)
            init = next((n for n in owner.node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
            if init is None:
                continue
            names |= _parameter_names(init) - {"self"}
            if init.args.kwarg is None:
                return names
            names |= self._kwargs_names(Definition(init, owner.module), init.args.kwarg.arg, owner, 0)
            if not _passes_kwargs_to_super(init, init.args.kwarg.arg):
                return names
        return names if names else None

    def _kwargs_names(self, function: Definition, kwargs: str, owner: Definition | None, depth: int) -> set[str]:
        """Keys read from the ``kwargs`` dict of ``function``, also where it hands the dict on: to
        ``self.method(kwargs)`` (the method's parameter at that place) or to ``callee(**kwargs)``."""
        names = _kwargs_reads(function.node, kwargs)
        if depth > MAX_DEPTH:
            return names
        for call in (n for n in ast.walk(function.node) if isinstance(n, ast.Call)):
            splatted = any(k.arg is None and isinstance(k.value, ast.Name) and k.value.id == kwargs
                           for k in call.keywords)
            place = next((i for i, a in enumerate(call.args) if isinstance(a, ast.Name) and a.id == kwargs), None)
            if not splatted and place is None:
                continue
            callee, callee_owner, offset = self._callee(function.module, call.func, owner)
            if callee is None or not isinstance(callee.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if splatted:
                names |= _parameter_names(callee.node) - {"self", "cls"}
                if callee.node.args.kwarg is not None:
                    names |= self._kwargs_names(callee, callee.node.args.kwarg.arg, callee_owner, depth + 1)
            else:
                params = [a.arg for a in callee.node.args.posonlyargs + callee.node.args.args][offset:]
                if place < len(params):
                    names |= self._kwargs_names(callee, params[place], callee_owner, depth + 1)
        return names

    def _callee(self, module: str, func: ast.expr, owner: Definition | None) -> tuple[Definition | None,
                                                                                      Definition | None, int]:
        """(definition, its class, positional offset of ``self``/``cls``) of a called name."""
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in ("self", "cls"):
            found = self.member(owner, func.attr) if owner is not None else None
            return found, owner, 1
        if isinstance(func, ast.Attribute):
            cls = self._name_in_module(module, func.value)
            if cls is not None and isinstance(cls.node, ast.ClassDef):
                found = self.member(cls, func.attr)
                bound = found is not None and _binding(found.node) != "static"
                return found, cls, int(bound)
            return None, None, 0
        return self._name_in_module(module, func), None, 0


def _top_level_statements(tree: ast.Module) -> Iterator[ast.stmt]:
    """Module-level statements, including those inside ``try`` / ``if`` blocks (guarded imports)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop(0)
        yield node
        if isinstance(node, ast.Try):
            stack[:0] = node.body + [s for h in node.handlers for s in h.body] + node.orelse + node.finalbody
        elif isinstance(node, ast.If):
            stack[:0] = node.body + node.orelse


def _assigned_names(node: ast.Assign | ast.AnnAssign) -> set[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return {t.id for t in targets if isinstance(t, ast.Name)}


def _absolute(module: str, node: ast.ImportFrom, path: Path | None) -> str:
    if not node.level:
        return node.module or ""
    package = module if path is not None and path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _dotted(expr: ast.expr) -> str | None:
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        head = _dotted(expr.value)
        return f"{head}.{expr.attr}" if head else None
    return None


def _parameter_names(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    args = node.args
    return {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}


def _kwargs_reads(node: ast.AST, kwargs: str) -> set[str]:
    """String keys the function reads from its ``**kwargs`` dict."""
    names: set[str] = set()
    for sub in ast.walk(node):
        if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr in ("pop", "get")
                and isinstance(sub.func.value, ast.Name) and sub.func.value.id == kwargs and sub.args
                and isinstance(sub.args[0], ast.Constant) and isinstance(sub.args[0].value, str)):
            names.add(sub.args[0].value)
        elif (isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name) and sub.value.id == kwargs
              and isinstance(sub.slice, ast.Constant) and isinstance(sub.slice.value, str)):
            names.add(sub.slice.value)
    return names


def _passes_kwargs_to_super(init: ast.FunctionDef, kwargs: str) -> bool:
    for sub in ast.walk(init):
        if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr == "__init__"
                and any(k.arg is None and isinstance(k.value, ast.Name) and k.value.id == kwargs
                        for k in sub.keywords)):
            return True
    return False


def _dataclass_fields(cls: ast.ClassDef) -> set[str]:
    is_dataclass = any(_dotted(d.func if isinstance(d, ast.Call) else d) in ("dataclass", "dataclasses.dataclass")
                       for d in cls.decorator_list)
    if not is_dataclass:
        return set()
    return {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def _binding(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    decorators = {_dotted(d) for d in node.decorator_list}
    return "static" if "staticmethod" in decorators else "class" if "classmethod" in decorators else "instance"


def _kind_matches(spec: SymbolSpec, node: ast.AST) -> bool:
    if spec.kind == "class":
        return isinstance(node, ast.ClassDef)
    if spec.kind in ("function", "method"):
        return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    return isinstance(node, (ast.Assign, ast.AnnAssign, ast.ClassDef, ast.FunctionDef))  # constant


def fetched_package_roots(root: str | Path | None = None) -> dict[str, Path] | None:
    """The NxDI and NxD packages of the fetched sources (``qwen35_neuron.sdk_sources``), or None
    when either tree is absent."""
    from ..sdk_sources import NXD, NXDI, source_tree

    trees = {"neuronx_distributed_inference": source_tree(NXDI, root), "neuronx_distributed": source_tree(NXD, root)}
    if any(tree is None for tree in trees.values()):
        return None
    return {package: tree / "src" / package for package, tree in trees.items()}


def check_against_source(manifest: Manifest, package_roots: dict[str, Path]) -> tuple[int, list[Finding]]:
    """(symbols checked, findings) of the manifest's NxDI / NxD entries against their source trees."""
    tree = SourceTree(package_roots)
    findings: list[Finding] = []
    checked = 0
    where = "api_manifest.json"
    for name, spec in sorted(manifest.symbols.items()):
        if name.split(".", 1)[0] not in package_roots:
            continue
        checked += 1
        found = tree.resolve(name)
        if found is None:
            findings.append(Finding(where, 0, "source-missing", f"{name} is not defined in the SDK source"))
            continue
        if not _kind_matches(spec, found.node):
            findings.append(Finding(where, 0, "source-kind", f"{name} is a {type(found.node).__name__} in the source, "
                                                             f"not a {spec.kind}"))
            continue
        if spec.kind == "method" and _binding(found.node) != spec.binding:
            findings.append(Finding(where, 0, "source-binding", f"{name} is a {_binding(found.node)} method in the "
                                                                f"source, not {spec.binding}"))
        if spec.kind in ("class", "function", "method") and not spec.free_override:
            owner = tree.resolve(name.rsplit(".", 1)[0]) if spec.kind == "method" else None
            accepted = tree.accepted_names(found, owner)
            if accepted is not None:
                unknown = sorted(p for p in spec.keyword_names if p not in accepted)
                if unknown:
                    findings.append(Finding(where, 0, "source-params",
                                            f"{name} does not accept {unknown} in the source ({found.module})"))
        if spec.kind == "class":
            missing = [m for m in spec.members if tree.member(found, m) is None]
            if missing:
                findings.append(Finding(where, 0, "source-members", f"{name} has no {missing} in the source"))
    for alias, target in sorted(manifest.aliases.items()):
        if alias.split(".", 1)[0] in package_roots and tree.resolve(alias) is None:
            findings.append(Finding(where, 0, "source-missing", f"alias {alias} (-> {target}) is not importable "
                                                                "in the SDK source"))
    return checked, findings
