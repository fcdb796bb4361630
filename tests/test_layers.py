"""Imports go one way, down the layers: no upward import, no cycle, the test helpers kept out of the product.

The layer order (bottom to top; layers of one tier never import each other) is the README's, "Layers":

    errors | sdk_sources -> config -> checkpoint -> parallel -> model -> kernels
      -> vision | decoding | neuron_layout -> vl -> runtime | neuron | analysis -> serving -> testing -> cli

``testing`` (tiny checkpoints, the transformers reference) is a helper package for the tests, the
benchmark scripts and the demo: inside the package only ``cli.demo`` imports it, and only inside its
``run`` (the reference run), so ``qwen35-neuron generate``, ``inspect`` and the Neuron path never load it.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from layering import Tiers, check_layers, read_imports, reachable

ROOT = Path(__file__).resolve().parents[1] / "contrib"
PACKAGE = "qwen35_neuron"

LAYERS = Tiers(
    tiers=[
        ("errors", "sdk_sources"),
        ("config",),
        ("checkpoint",),
        ("parallel",),
        ("model",),
        ("kernels",),
        ("vision", "decoding", "neuron_layout"),
        ("vl",),
        ("runtime", "neuron", "analysis"),
        ("serving",),
        ("testing",),
        ("cli",),
    ],
    restricted={"testing": ("cli.demo",)},
)

# Modules that must never load the test helpers, not even lazily (every import they can reach is followed).
NO_TESTING = ("cli.generate", "cli.inspect_checkpoint", "cli.bench", "cli.compile", "neuron", "serving")
SDK_MODULES = ("neuronx_distributed", "neuronx_distributed_inference", "torch_neuronx", "neuronxcc", "libneuronxla")


@pytest.fixture(scope="module")
def package_imports():
    return read_imports(ROOT, PACKAGE)


def test_imports_go_down_the_layers_without_cycles(package_imports):
    problems = check_layers(package_imports, LAYERS)
    assert not problems, "\n".join(problems)


def test_every_layer_of_the_tree_is_placed_and_every_placed_layer_exists(package_imports):
    present = {package_imports.layer_of(m) for m in package_imports.modules if m != PACKAGE}
    placed = {layer for tier in LAYERS.tiers for layer in tier}
    assert present == placed


def test_the_readme_states_this_layer_order_and_lists_every_layer(package_imports):
    readme = (ROOT.parent / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(readme) if line.strip().startswith("errors | sdk_sources ->"))
    order = " ".join(line.strip() for line in readme[start:start + 2])
    assert [tuple(part.split(" | ")) for part in order.split(" -> ")] == [tuple(tier) for tier in LAYERS.tiers]
    layout = "\n".join(readme)
    for layer in {package_imports.layer_of(m) for m in package_imports.modules if m != PACKAGE}:
        assert f"  {layer}/" in layout or f"{layer}.py" in layout, f"README's layout does not list {layer}"


def test_the_readmes_layout_lists_every_script_and_test_directory():
    readme = (ROOT.parent / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(readme) if line.startswith("compile_scripts/"))
    end = next(i for i in range(start, len(readme)) if readme[i].startswith("```"))
    block = "\n".join(readme[start:end])
    scripts = sorted(p.name for p in (ROOT.parent / "compile_scripts").glob("*.py"))
    tests = sorted(f"{p.name}/" for p in (ROOT.parent / "tests").iterdir()
                   if p.is_dir() and not p.name.startswith((".", "__")))
    assert [name for name in scripts + tests if name not in block] == []


def test_generate_inspect_and_the_neuron_path_never_import_the_test_helpers(package_imports):
    starts = [f"{PACKAGE}.{name}" for name in NO_TESTING]
    starts += [m for m in package_imports.modules if any(m.startswith(s + ".") for s in starts)]
    chains = reachable(package_imports, starts)
    leaks = [" -> ".join(chain) for module, chain in sorted(chains.items()) if module.startswith(f"{PACKAGE}.testing")]
    assert not leaks, "\n".join(leaks)


def test_the_cli_loads_the_test_helpers_only_when_the_demo_runs(package_imports):
    eager = [imp for imp in package_imports.imports if not imp.lazy]
    module_level = type(package_imports)(package_imports.package, package_imports.modules, eager)
    chains = reachable(module_level, [f"{PACKAGE}.cli.main"])
    leaks = [" -> ".join(chain) for module, chain in sorted(chains.items()) if module.startswith(f"{PACKAGE}.testing")]
    assert not leaks, "\n".join(leaks)


def test_only_the_neuron_layer_imports_the_neuron_sdk(package_imports):
    offenders = []
    for module, path in package_imports.modules.items():
        if package_imports.layer_of(module) == "neuron":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in SDK_MODULES]
    assert not offenders, "\n".join(offenders)


# ----------------------------------------------------------------------------- the checker itself

def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_checker_reports_a_planted_upward_import_a_cycle_and_a_restricted_import(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/low/__init__.py": "",
        "pkg/low/base.py": """
            def helper():
                from ..high.top import thing  # planted: a lazy upward import
                return thing
            """,
        "pkg/mid/__init__.py": "from . import user\n",
        "pkg/mid/user.py": "from pkg.low.base import helper\nfrom ..side import other\n",
        "pkg/side/__init__.py": "",
        "pkg/side/other.py": "from ..mid import user\n",
        "pkg/high/__init__.py": "",
        "pkg/high/top.py": "import pkg.low.base\nthing = 1\nNAME = 'pkg.helpers.tools'\n",
        "pkg/helpers/__init__.py": "",
        "pkg/helpers/tools.py": "",
    })
    tiers = Tiers([("low",), ("mid", "side"), ("high",), ("helpers",)], restricted={"helpers": ("low",)})
    problems = check_layers(read_imports(tmp_path, "pkg"), tiers)
    text = "\n".join(problems)
    assert "upward lazy import" in text and "pkg.low.base -> pkg.high.top" in text
    assert "sideways import" in text and "pkg.mid.user -> pkg.side" in text
    assert "cycle between layers: high <-> low" in text
    assert "cycle between layers: mid <-> side" in text
    assert "restricted import" in text and "pkg.high.top -> pkg.helpers.tools" in text  # named by a string
    assert not any("pkg.high.top -> pkg.low.base" in p for p in problems if "upward" in p)  # downward is fine


def test_checker_passes_a_clean_package_and_names_unplaced_layers(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "from .high import top\n",
        "pkg/low.py": "X = 1\n",
        "pkg/high/__init__.py": "",
        "pkg/high/top.py": "from ..low import X\nfrom .. import low\n",
        "pkg/stray/__init__.py": "",
    })
    imports = read_imports(tmp_path, "pkg")
    assert {(i.source, i.target) for i in imports.imports} >= {("pkg.high.top", "pkg.low")}
    assert check_layers(imports, Tiers([("low",), ("high",), ("stray",)])) == []
    assert check_layers(imports, Tiers([("low",), ("high",)])) == [
        "unplaced layer: pkg.stray is in no tier of the layer order"]
