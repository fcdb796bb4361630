"""``qwen35-neuron generate --image`` (ids and text prompts, batches, --json), its errors, and the
image case of ``qwen35-neuron demo``."""

from __future__ import annotations

import json

from qwen35_neuron.cli.main import main
from vl_helpers import CASES, IMAGE, NEW_TOKENS

SMALL = ["--buckets", "16,32", "--max-seq-len", "64", "--vision-buckets", "32,64", "--max-new-tokens", str(NEW_TOKENS)]


def _ids(case: str) -> str:
    return ",".join(str(t) for t in CASES[case][0])


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_image_json_matches_transformers(capsys, vl_dir, images, hf_reference):
    code, out, _ = _run(capsys, "generate", "--model", vl_dir, "--input-ids", _ids("one_image"),
                        "--image", images["wide"], "--json", *SMALL)
    assert code == 0
    assert json.loads(out) == {"tokens": [hf_reference("one_image")[0]]}


def test_batch_assigns_images_in_order_across_rows(capsys, vl_dir, images, hf_reference):
    code, out, _ = _run(capsys, "generate", "--model", vl_dir, "--input-ids", _ids("one_image"),
                        "--input-ids", _ids("no_image"), "--input-ids", _ids("two_images"),
                        "--image", images["wide"], "--image", images["tall"], "--image", images["square"],
                        "--json", *SMALL)
    assert code == 0
    expected = [hf_reference(c)[0] for c in ("one_image", "no_image", "two_images")]
    assert json.loads(out)["tokens"] == expected


def test_prompt_text_expands_the_image_pad_literal(capsys, vl_dir, images):
    by_text = _run(capsys, "generate", "--model", vl_dir, "--prompt", "ab<|image_pad|>c", "--image",
                   images["wide"], "--json", *SMALL)
    by_ids = _run(capsys, "generate", "--model", vl_dir, "--input-ids", f"97,98,{IMAGE},99", "--image",
                  images["wide"], "--json", *SMALL)
    assert by_text[0] == by_ids[0] == 0
    assert json.loads(by_text[1]) == json.loads(by_ids[1])


def test_cli_errors_are_one_line(capsys, vl_dir, images):
    cases = [
        (["--input-ids", f"1,{IMAGE}", "--image", images["wide"], "--image", images["tall"]], "fewer placeholders"),
        (["--input-ids", f"1,{IMAGE},{IMAGE}", "--image", images["wide"]], "more placeholders"),
        (["--input-ids", f"1,{IMAGE}"], "0 image(s) were given"),
        (["--input-ids", f"1,{IMAGE}", "--image", images["broken"]], "cannot read image"),
        (["--input-ids", f"1,{IMAGE}", "--image", images["big"]], "largest vision bucket holds 64"),
        (["--input-ids", "1", "--vision-buckets", "3x"], "--vision-buckets must be"),
    ]
    for extra, message in cases:
        code, _, err = _run(capsys, "generate", "--model", vl_dir, *SMALL, *extra)
        assert code == 2, extra
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_demo_image_case(capsys):
    code, out, _ = _run(capsys, "demo", "--case", "image")
    assert code == 0
    assert out.count("match: True") == 2 and "match: False" not in out and "RESULT: tokens match" in out


def test_checkpoint_without_processor_file_takes_the_towers_geometry(capsys, tiny_dir, images):
    """No preprocessor_config.json: patch/merge sizes come from the vision config, not 35B defaults."""
    code, out, err = _run(capsys, "generate", "--model", tiny_dir, "--input-ids", f"1,{IMAGE},2",
                          "--image", images["wide"], "--max-new-tokens", "2", "--json",
                          "--vision-buckets", "32,64", "--min-pixels", "64", "--max-pixels", "4096")
    assert code == 0, err
    assert len(json.loads(out)["tokens"][0]) == 2


def test_inverted_pixel_limits_are_an_error(capsys, tiny_dir, images):
    code, _, err = _run(capsys, "generate", "--model", tiny_dir, "--input-ids", f"1,{IMAGE},2",
                        "--image", images["wide"], "--min-pixels", "1000", "--max-pixels", "10")
    assert code == 2 and "min_pixels <= max_pixels" in err and err.count("\n") == 1
