"""The one line a tier prints when its fetched sources are absent: names each, says how to get it."""

from __future__ import annotations

from qwen35_neuron.sdk_sources import NKI_LIBRARY, NXD, NXDI, missing_sources, missing_sources_line, source_tree


def test_missing_line_names_each_absent_tree_and_how_to_get_it(tmp_path):
    (tmp_path / NXD).mkdir()
    (tmp_path / NXD / "setup.py").write_text("")
    assert source_tree(NXD, tmp_path) == tmp_path / NXD
    assert missing_sources([NXDI, NXD, NKI_LIBRARY, "nki-library-gdn"], tmp_path) == [NXDI, NKI_LIBRARY, "nki-library-gdn"]
    line = missing_sources_line("tier 99", [NXDI, NXD, "nki-library-gdn"], tmp_path)
    assert "\n" not in line and line.startswith(f"tier 99: skipped, sources absent under {tmp_path}:")
    assert "https://github.com/aws-neuron/neuronx-distributed-inference" in line
    assert "https://github.com/aws-neuron/neuronx-distributed " not in line  # present: not asked for
    assert "github.com/nki-library-gdn" not in line and "nki-library-gdn: files of earlier commits" in line


def test_environment_names_another_root(tmp_path, monkeypatch):
    (tmp_path / NXDI).mkdir()
    (tmp_path / NXDI / "README.md").write_text("")
    monkeypatch.setenv("QWEN35_SOURCES", str(tmp_path))
    assert source_tree(NXDI) == tmp_path / NXDI
