"""Bad data and bad checkpoints: a non-zero exit, one 'error:' line naming the file, no traceback,
nothing already on disk changed, and no training started."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import run_stage, target_flags
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def data(tiny_demo, tmp_path):
    """A private copy of the tiny demo pair to break, and a results folder holding an earlier artifact."""
    root = tmp_path / "data"
    shutil.copytree(tiny_demo, root)
    results = tmp_path / "results"
    results.mkdir()
    (results / "metrics.tsv").write_text("earlier run\n")
    return root, results


def workflow(tmp_path, results, source_root, target_root, source_format="gta5", dry=False):
    cfg = {"results": str(results), "rounds": 1, "ssl_steps": 1,
           "source": {"format": source_format, "root": str(source_root)},
           "target": {"format": "cityscapes", "root": str(target_root)}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", str(path)]
    cmd += ["--dry-run"] if dry else []
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)


def assert_clean_failure(proc, results, needle):
    assert proc.returncode != 0
    errors = sorted({ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip().startswith("error:")})
    assert len(errors) == 1 and needle in errors[0], (errors, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    assert (results / "metrics.tsv").read_text() == "earlier run\n"
    assert not (results / "m0" / "segmenter.pt").exists()


@pytest.mark.parametrize("case", ["missing_root", "empty_root", "cityscapes_as_gta5", "image_without_label",
                                  "empty_val_split"])
def test_layout_errors_stop_the_workflow_at_start(data, tmp_path, case):
    root, results = data
    src, tgt, fmt = root / "source", root / "target", "gta5"
    needle = ""
    if case == "missing_root":
        src, needle = root / "nope", "nope: GTA5 root not found"
    elif case == "empty_root":
        src = root / "empty"
        src.mkdir()
        needle = "empty: not a GTA5 layout"
    elif case == "cityscapes_as_gta5":
        src, needle = tgt, "this looks like a Cityscapes root"
    elif case == "image_without_label":
        (src / "labels" / "00003.png").unlink()
        needle = "00003.png: label file not found for image 00003.png"
    elif case == "empty_val_split":
        shutil.rmtree(tgt / "leftImg8bit" / "val")
        needle = "not a Cityscapes layout, expected leftImg8bit/val"
    assert_clean_failure(workflow(tmp_path, results, src, tgt, fmt, dry=True), results, needle)


def _break(root: Path, case: str) -> str:
    label = root / "source" / "labels" / "00002.png"
    image = root / "source" / "images" / "00002.png"
    if case == "size_mismatch":
        Image.fromarray(np.zeros((10, 20), np.uint8), mode="L").save(label)
        return "00002.png: label is 20x10 but image 00002.png is 64x32"
    if case == "ids_outside_table":
        Image.fromarray(np.full((32, 64), 200, np.uint8), mode="L").save(label)
        return "label ids [200] outside the label table"
    if case == "truncated_png":
        image.write_bytes(image.read_bytes()[:60])
        return "00002.png: cannot decode image"
    if case == "zero_byte_label":
        label.write_bytes(b"")
        return "00002.png: empty file"
    if case == "corrupt_target_val_label":
        val = sorted((root / "target" / "gtFine" / "val").rglob("*_labelIds.png"))[0]
        val.write_bytes(b"not a png at all")
        return f"{val.name}: cannot decode label"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["size_mismatch", "ids_outside_table", "truncated_png", "zero_byte_label",
                                  "corrupt_target_val_label"])
def test_pixel_errors_stop_before_training(data, tmp_path, case):
    root, results = data
    needle = _break(root, case)
    proc = workflow(tmp_path, results, root / "source", root / "target")
    assert_clean_failure(proc, results, needle)
    log = (results / "logs" / "check_data.log").read_text().strip().splitlines()
    assert log[-1].startswith("error:") and needle in log[-1]
    assert not (results / "data_check.json").exists()


@pytest.fixture(scope="module")
def translator_ckpt(tiny_demo, tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    run_stage("train_translator", "--source-format", "gta5", "--source-root", tiny_demo / "source",
              *target_flags(tiny_demo), "--ngf", "4", "--n-blocks", "1", "--ndf", "4", "--iterations", "1",
              "--batch-size", "2", "--threads", "1", "--out", d / "f.pt")
    return d / "f.pt"


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path("PWNED-by-checkpoint"),))


@pytest.mark.parametrize("case", ["translator_as_segmenter", "other_architecture", "not_a_checkpoint",
                                  "pickle_with_code"])
def test_bad_checkpoints(tiny_demo, tmp_path, translator_ckpt, case, monkeypatch):
    ckpt = tmp_path / "m.pt"
    if case == "translator_as_segmenter":
        ckpt, needle = translator_ckpt, "a translator checkpoint, expected a segmenter"
    elif case == "other_architecture":
        from bdl.models import build_segmenter

        arch = {"backbone": "resnet_mini", "width": 16, "freeze_bn": False, "aspp_dilations": [6, 12, 18, 24],
                "num_classes": 19}
        state = build_segmenter("resnet_mini", width=8).state_dict()
        torch.save({"kind": "segmenter", "model": state, "arch": arch}, ckpt)
        needle = "segmenter weights do not fit this architecture"
    elif case == "not_a_checkpoint":
        ckpt.write_bytes(b"\x89PNG this is not a checkpoint")
        needle = "m.pt: not a loadable bdl checkpoint"
    else:
        torch.save({"kind": "segmenter", "model": _Payload()}, ckpt)
        needle = "m.pt: not a loadable bdl checkpoint"
    out = tmp_path / "eval.json"
    out.write_text("{}")
    monkeypatch.chdir(tmp_path)
    proc = run_stage("evaluate", "--segmenter", ckpt, *target_flags(tiny_demo), "--out", out, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error:") and needle in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
    assert out.read_text() == "{}"
    assert not (REPO / "PWNED-by-checkpoint").exists() and not (tmp_path / "PWNED-by-checkpoint").exists()


@pytest.mark.parametrize("mode, missing", [("ssl", "--pseudo"), ("adversarial", "--translated"),
                                           ("ssl", "--translated")])
def test_a_missing_mode_input_is_named_before_any_data_is_read(tmp_path, mode, missing):
    given = {"--translated": ["--translated", tmp_path / "t.h5"], "--pseudo": ["--pseudo", tmp_path / "p.h5"]}
    flags = [f for k, v in given.items() if k != missing for f in v]
    # the target root does not exist either: the missing flag must be what the user hears about first
    proc = run_stage("train_segmenter", "--mode", mode, *flags, "--target-format", "cityscapes", "--iterations", "1",
                     "--target-root", tmp_path / "nowhere", "--out", tmp_path / "m.pt", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines[-1] == f"error: --mode {mode} needs {missing}", proc.stderr
    assert not (tmp_path / "m.pt").exists()


def test_a_translated_set_without_its_source_is_refused_naming_the_flags(tmp_path):
    proc = run_stage("train_segmenter", "--mode", "adversarial", "--translated", tmp_path / "t.h5",
                     "--target-format", "cityscapes", "--target-root", tmp_path / "nowhere", "--iterations", "1",
                     "--out", tmp_path / "m.pt", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines[-1].startswith("error: --translated ")
    assert "its labels are the source's: give --source-format and --source-root" in lines[-1]
