"""Translated images made elsewhere (the reference's released ones) as a round's translated set: the same set
translate.py would write for the same pictures, bad folders refused in one line, and no F_k trained for it."""

import h5py
import numpy as np
import yaml
from conftest import run_stage, snakemake
from PIL import Image


def source(results):
    return ["--source-format", "gta5", "--source-root", results / "data" / "source"]


def test_imported_set_equals_the_set_its_images_came_from(finished_run, tmp_path):
    _, results = finished_run
    original = results / "round1" / "translated.h5"
    run_stage("export_set", original, "--out", tmp_path / "released")  # PNGs, as a released set ships
    run_stage("import_translated", "--images", tmp_path / "released", *source(results),
              "--out", tmp_path / "imported.h5")
    with h5py.File(original, "r") as a, h5py.File(tmp_path / "imported.h5", "r") as b:
        assert sorted(b) == ["images", "names"]  # the labels stay the source's, as translate.py leaves them
        for key in ("images", "names"):
            assert np.array_equal(a[key][:], b[key][:]), key
        for key in ("names_hash", "set_kind", "set_format"):
            assert a.attrs[key] == b.attrs[key], key
        assert b.attrs["made_by"] == "import_translated"


def test_a_missing_frame_or_a_wrong_size_is_refused_in_one_line(finished_run, tmp_path):
    _, results = finished_run
    run_stage("export_set", results / "round1" / "translated.h5", "--out", tmp_path / "released")
    images = sorted((tmp_path / "released" / "images").glob("*.png"))
    images[3].unlink()
    missing = run_stage("import_translated", "--images", tmp_path / "released", *source(results),
                        "--out", tmp_path / "a.h5", check=False)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'released'}: no translation of source frame {images[3].stem} (1 of 16 frames missing)")
    Image.new("RGB", (50, 30)).save(images[3])
    wrong = run_stage("import_translated", "--images", tmp_path / "released", *source(results),
                      "--out", tmp_path / "b.h5", check=False)
    last = wrong.stderr.strip().splitlines()[-1]
    assert wrong.returncode == 2 and last.startswith(f"error: {images[3]}: 50x30, but its source frame")
    assert not (tmp_path / "a.h5").exists() and not (tmp_path / "b.h5").exists()


def test_the_workflow_imports_instead_of_training_the_translator(finished_run, tmp_path):
    cfg, results = finished_run
    (tmp_path / "released").mkdir()
    config = yaml.safe_load(cfg.read_text()) | {"results": str(tmp_path / "r"),
                                                "import_translated": [str(tmp_path / "released")]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    out = snakemake(path, "-n").stdout
    jobs = dict(line.split() for line in out.splitlines() if line.count(" ") >= 1 and line.split()[-1].isdigit()
                and len(line.split()) == 2)
    assert jobs.get("import_translated") == "1" and "train_translator" not in jobs and "translate" not in jobs
