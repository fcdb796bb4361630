"""Reads a package's imports with `ast` and reports every import that breaks its layer order.

What counts as an import of module M: `import M`, `from M import x` and relative `from .. import x`
(x resolved to a submodule when it is one), at module level or inside a function (lazy imports count
the same), and a string constant naming one of the package's modules (`"pkg.sub.mod"`,
`"pkg.sub.mod:Class"`), which is how `importlib.import_module` and entry points name a module.

Rules, for layers given bottom to top as tiers (`[("config",), ("model", "parallel"), ...]`):
- a module may import its own layer and the layers of lower tiers, nothing else: importing a higher
  tier is an *upward* import, importing another layer of the same tier a *sideways* import;
- the layer graph has no cycle;
- every layer (a subpackage or a top-level module of the package) sits in some tier;
- a *restricted* layer may be imported only by the modules named for it (plus itself).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module of the package, dotted
    path: Path
    line: int
    lazy: bool  # inside a function

    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class PackageImports:
    package: str
    modules: dict[str, Path]  # dotted name -> file
    imports: list[Import] = field(default_factory=list)

    def layer_of(self, module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else "__init__"


def _module_names(root: Path, package: str) -> dict[str, Path]:
    base = root / package
    names: dict[str, Path] = {}
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("").parts
        if rel[-1] == "__init__":
            rel = rel[:-1]
        names[".".join(rel)] = path
    return names


def _enclosing_functions(tree: ast.AST) -> set[int]:
    """ids of the nodes that sit inside a function body."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for child in ast.walk(node):
                if child is not node:
                    inside.add(id(child))
    return inside


def read_imports(root: Path | str, package: str) -> PackageImports:
    """Every import of the package's own modules by the package's modules, below `root`."""
    root = Path(root)
    modules = _module_names(root, package)
    result = PackageImports(package, modules)
    prefix = package + "."

    def own(name: str) -> str | None:
        """The longest module of the package that `name` is or lies in."""
        while name:
            if name in modules:
                return name
            name = name.rpartition(".")[0]
        return None

    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        inside = _enclosing_functions(tree)
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                for alias in node.names:
                    sub = f"{origin}.{alias.name}"
                    targets.append(sub if sub in modules else origin)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value.split(":", 1)[0]
                if text.startswith(prefix) and text in modules:
                    targets = [text]
            for target in dict.fromkeys(targets):
                if target != package and not target.startswith(prefix):
                    continue
                found = own(target)
                if found is not None and found != module:
                    result.imports.append(Import(module, found, path, getattr(node, "lineno", 0), id(node) in inside))
    return result


@dataclass(frozen=True)
class Tiers:
    """Layers bottom to top; `restricted[layer]` = the only modules (dotted, or layer names) allowed to
    import that layer besides itself."""

    tiers: Sequence[Sequence[str]]
    restricted: dict[str, Sequence[str]] = field(default_factory=dict)

    def rank(self, layer: str) -> int | None:
        for index, tier in enumerate(self.tiers):
            if layer in tier:
                return index
        return None


def layer_cycles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected groups of more than one layer (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def _allowed_importer(source: str, source_layer: str, allowed: Sequence[str]) -> bool:
    """`allowed` names layers or modules relative to the package (`cli.demo`)."""
    relative = source.split(".", 1)[1] if "." in source else source
    return any(source_layer == name or relative == name or relative.startswith(name + ".") for name in allowed)


def check_layers(imports: PackageImports, tiers: Tiers) -> list[str]:
    """One line per broken rule; empty when the package keeps its layers."""
    problems: list[str] = []
    layers = sorted({imports.layer_of(m) for m in imports.modules if m != imports.package})
    for layer in layers:
        if tiers.rank(layer) is None:
            problems.append(f"unplaced layer: {imports.package}.{layer} is in no tier of the layer order")
    edges: set[tuple[str, str]] = set()
    for imp in imports.imports:
        if imp.source == imports.package or imp.target == imports.package:
            continue  # the package's own __init__ re-exports; it is nobody's layer
        a, b = imports.layer_of(imp.source), imports.layer_of(imp.target)
        if a == b:
            continue
        edges.add((a, b))
        how = "lazy import" if imp.lazy else "import"
        if b in tiers.restricted and not _allowed_importer(imp.source, a, tiers.restricted[b]):
            problems.append(f"restricted import: {imp.where()}: {imp.source} -> {imp.target} ({b} may be imported "
                            f"only by {', '.join(tiers.restricted[b])})")
        ra, rb = tiers.rank(a), tiers.rank(b)
        if ra is None or rb is None:
            continue
        if rb > ra:
            problems.append(f"upward {how}: {imp.where()}: {imp.source} -> {imp.target} "
                            f"({a}, tier {ra}, imports {b}, tier {rb})")
        elif rb == ra:
            problems.append(f"sideways {how}: {imp.where()}: {imp.source} -> {imp.target} "
                            f"({a} and {b} share tier {ra})")
    for group in layer_cycles(edges):
        problems.append("cycle between layers: " + " <-> ".join(group))
    return problems


def reachable(imports: PackageImports, starts: Iterable[str]) -> dict[str, list[str]]:
    """Every module reachable from `starts` through imports (lazy ones too), with one import chain."""
    graph: dict[str, set[str]] = {}
    for imp in imports.imports:
        graph.setdefault(imp.source, set()).add(imp.target)
        # importing a.b.c runs a/__init__ and a/b/__init__ too
        parts = imp.target.split(".")
        for cut in range(2, len(parts)):
            graph[imp.source].add(".".join(parts[:cut]))
    chains: dict[str, list[str]] = {}
    todo = []
    for start in starts:
        chains[start] = [start]
        todo.append(start)
    while todo:
        node = todo.pop()
        for nxt in sorted(graph.get(node, ())):
            if nxt not in chains:
                chains[nxt] = chains[node] + [nxt]
                todo.append(nxt)
    return chains
