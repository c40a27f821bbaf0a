"""The run's HTML viewer (stages/viewer.py, rule viewer) opened from disk in a real headless browser, Debian's
chromium: it loads without errors, shows the tiny run's rows, and every file it names is in its folder."""

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from conftest import run_stage, target_flags

from bdl.defaults import default

CHROMIUM = "/usr/bin/chromium"  # Debian's package, which .ci/run installs


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).is_file() else None)
    if path is None:
        reason = "chromium not found (Debian: apt-get install chromium); the viewer is tested in a real browser"
        if os.environ.get("BDL_REQUIRE_CHROMIUM"):
            pytest.fail(f"BDL_REQUIRE_CHROMIUM is set but {reason}")
        pytest.skip(reason)
    return path


class Page(HTMLParser):
    """What a test needs of a page: <html>'s attributes, per section its rows (all, shown) and header
    cells, and every <img>."""

    def __init__(self, text: str):
        super().__init__()
        self.root, self.sections, self.imgs = {}, {}, []
        self._section, self._body = None, False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.root = a
        elif tag == "section":
            self._section = self.sections.setdefault(a["id"], {"rows": 0, "shown": 0, "columns": 0})
        elif tag == "tbody":
            self._body = True
        elif tag == "tr" and self._body:
            self._section["rows"] += 1
            self._section["shown"] += "hidden" not in a
        elif tag == "th" and self._section is not None and not self._body:
            self._section["columns"] += 1
        elif tag == "img":
            self.imgs.append(a)

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._body = False
        elif tag == "section":
            self._section = None


def browse(chromium, page: Path, profile: Path, fragment: str = "") -> tuple[Page, str]:
    """The page's DOM once loaded (its images included), and chromium's log."""
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", f"--user-data-dir={profile}", "--dump-dom", page.as_uri() + fragment],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Page(proc.stdout), proc.stderr


def expected_sections(cfg: dict) -> dict:
    """Section id -> (rows, header cells) for a demo config that leaves the viewer keys at their defaults."""
    sample, demo, k, n = default("viewer.sample"), cfg["demo"], cfg["rounds"], cfg["ssl_steps"]
    models = 1 + k * (1 + n) + bool(cfg["oracle"])
    return {"translated": (min(sample, demo["n_source"]), 1 + 1 + k + 1),  # frame, source, rounds, label
            "pseudo": (min(sample, demo["n_target_train"]), 1 + 1 + k * n),  # frame, target, SSL steps
            "predictions": (min(sample, default("evaluate.num_predictions"), demo["n_target_val"]),
                            1 + 2 + models)}  # frame, image, ground truth, models


@pytest.fixture(scope="module")
def viewer(finished_run):
    cfg, results = finished_run
    return yaml.safe_load(cfg.read_text()), results / "viewer"


def test_first_pages_load_without_errors(chromium, viewer, tmp_path):
    cfg, folder = viewer
    page, log = browse(chromium, folder / "index.html", tmp_path / "profile")
    # the page never logs on purpose: any console line is an uncaught error or a failed load
    assert not [line for line in log.splitlines() if ":CONSOLE" in line]
    assert page.root.get("data-errors") == "", page.root
    per_page = default("viewer.per_page")
    assert {sid: (s["rows"], s["columns"]) for sid, s in page.sections.items()} == expected_sections(cfg)
    for s in page.sections.values():
        assert s["shown"] == min(per_page, s["rows"])
    # only the shown rows' thumbnails are fetched, and each of them arrived (plus the legend's swatch)
    fetched = [img for img in page.imgs if img.get("src")]
    assert int(page.root["data-loaded"]) == len(fetched) == 1 + sum(
        min(per_page, rows) * (cols - 1) for rows, cols in expected_sections(cfg).values())


def test_all_rows_load_without_errors(chromium, viewer, tmp_path):
    cfg, folder = viewer
    page, log = browse(chromium, folder / "index.html", tmp_path / "profile", "#all")
    assert not [line for line in log.splitlines() if ":CONSOLE" in line]
    assert page.root.get("data-errors") == "", page.root
    assert all(s["shown"] == s["rows"] > 0 for s in page.sections.values())
    assert all(img.get("src") for img in page.imgs)
    assert int(page.root["data-loaded"]) == len(page.imgs)


def test_every_referenced_file_is_in_the_folder(viewer):
    _, folder = viewer
    text = (folder / "index.html").read_text()
    refs = re.findall(r'\b(?:src|data-src|href)="([^"]*)"', text)
    files = [unquote(ref) for ref in refs if not ref.startswith("#")]
    assert len(files) > 100
    for ref in files:
        assert "://" not in ref and not ref.startswith("/"), ref  # nothing fetched from elsewhere
        path = (folder / ref).resolve()
        assert path.is_file() and folder.resolve() in path.parents, ref
    assert "<script src" not in text and "<link" not in text


def test_bad_input_is_one_line(tmp_path, finished_run):
    _, results = finished_run
    missing = tmp_path / "missing.h5"
    proc = run_stage("viewer", "--translated", f"round1={missing}", "--out", tmp_path / "v", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: {missing}: set not found (--translated round1=...)"]
    # a translated set given as a pseudo-label set
    translated = results / "round1" / "translated.h5"
    proc = run_stage("viewer", "--pseudo", f"round1_ssl1={translated}", *target_flags(results / "data"),
                     "--out", tmp_path / "v", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: {translated}: a translated set, not a pseudo-label set"]
    assert not (tmp_path / "v").exists() and not list(tmp_path.glob(".v.*"))


def test_label_pictures(tmp_path):
    import numpy as np

    from bdl.viz import hatch_ignored, read_label_png, save_label_png

    label = np.array([[0, 255, 18, 255], [255, 7, 255, 1]], np.uint8)
    save_label_png(label, tmp_path / "l.png")
    assert np.array_equal(read_label_png(tmp_path / "l.png"), label)  # trainIds back, 255 included
    grey = np.full((2, 4, 3), 100, np.uint8)
    drawn = hatch_ignored(grey, label)
    assert (drawn[label != 255] == 100).all() and (drawn[label == 255] != 100).all()


def test_the_viewer_reads_a_sample_of_each_translated_set(finished_run, tmp_path):
    import h5py
    import numpy as np

    from bdl.artifacts import frames

    _, results = finished_run
    full, sample = results / "round1" / "translated.h5", results / "round1" / "viewer_sample.h5"
    with h5py.File(full, "r") as f, h5py.File(sample, "r") as s:
        indices = list(s.attrs["indices"])
        assert s.attrs["total"] == len(f["names"]) and 0 < len(indices) <= default("viewer.sample")
        for key in ("images", "names"):  # stored as in the set: the rows copied as they are
            assert np.array_equal(s[key][:], f[key][indices]), key
        assert np.array_equal(frames(s, "images")[:], frames(f, "images")[indices])
    refused = run_stage("sample_set", tmp_path / "nope.h5", "--out", tmp_path / "s.h5", check=False)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].startswith("error:")
    assert not (tmp_path / "s.h5").exists()
