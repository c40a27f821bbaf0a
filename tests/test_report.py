"""snakemake --report: the workflow's description, a caption for every item, the viewer and the predictions."""

import zipfile

from conftest import snakemake


def test_report_has_description_captions_viewer_and_predictions(finished_run, tmp_path):
    cfg, results = finished_run
    report = tmp_path / "report.zip"
    snakemake(cfg, "--report", str(report))
    with zipfile.ZipFile(report) as z:
        names = z.namelist()
        text = "\n".join(z.read(n).decode("utf-8", "replace") for n in names if n.endswith((".html", ".js")))
    # the viewer's folder under its own hash, beside report.html
    assert len([n for n in names if n.endswith("/index.html")]) == 1 and "report/report.html" in names
    predictions = [n for n in names if n.endswith("_000019.png")]  # the demo's val frames, as evaluate named them
    assert len(predictions) == 4 * 4  # 4 composites for each of m0, round1 adv, round1 ssl1, oracle
    assert not any(n.endswith("_pred.png") for n in names)  # the pattern keeps out the viewer's palette PNGs
    for phrase in ("Two models learn in a closed loop",  # the workflow's description
                   "real A", "moving average", "ignored pixels in white", "image |"):
        assert phrase in text, phrase
