"""benchmarks/rehearse.py's reading of stage logs (its whole run takes an hour: docs/rehearsal.md)."""

import json

import pytest
from rehearse import bar_seconds, gpu_rates, jobs_of, rates_of

from bdl.defaults import merged, schema_defaults


def test_seconds_per_step_and_per_frame_from_the_last_finished_bar(tmp_path):
    log = tmp_path / "train.log"
    # what tqdm writes into a log (not a terminal): a partial bar, then the finished one with its postfix
    log.write_text("train_segmenter[source]:   0%|          | 0/2 [00:55<?, ?it/s, seg=5.876]\n"
                   "train_segmenter[source]: 100%|##########| 2/2 [01:21<00:00, 40.64s/it, seg=5.538]\n")
    assert bar_seconds(log) == pytest.approx(40.64)
    inference = tmp_path / "translate.log"
    inference.write_text("translate: 100%|##########| 1/1 [01:40<00:00, 100.50s/it]\n")
    assert bar_seconds(inference, items=4) == pytest.approx(25.0)  # the bar counts batches of 4 frames
    fast = tmp_path / "fast.log"
    fast.write_text("evaluate: 100%|##########| 8/8 [00:02<00:00,  3.50it/s]\n")
    assert bar_seconds(fast) == pytest.approx(1 / 3.5)
    assert bar_seconds(tmp_path / "missing.log") is None


def test_every_model_job_of_the_preset_shape_is_read():
    cfg = merged(schema_defaults(), {"results": "r", "rounds": 2, "ssl_steps": 3, "oracle": False})
    stages = [job["stage"] for job in jobs_of(cfg)]
    assert stages.count("train_ssl") == stages.count("pseudo_label") == 6
    assert stages.count("evaluate") == 9 and stages.count("train_translator") == 2


def test_gpu_rates_come_from_a_gpu_proof_in_the_presets_compute_format(tmp_path):
    figures = [{"figure": key, "mode": mode, "seconds": (1.0 if mode == "fp32" else 0.5) * (i + 1), "unit": "step"}
               for i, key in enumerate(("source_step", "adversarial_step", "ssl_step", "translator_step",
                                        "translate_frame", "pseudo_label_frame"))
               for mode in ("fp32", "bf16+channels_last")]
    summary = {"device": "cuda", "tiny": False, "pieces": {
        "env": {"status": "ok", "facts": {"gpu": "NVIDIA H100 80GB HBM3"}},
        "gpu_check": {"status": "ok", "figures": figures},
        "evaluate": {"status": "ok", "seconds_per_frame": 0.2, "frame_size": [2048, 1024]}}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    auto = merged(schema_defaults(), {"results": "r"})
    label, rates = gpu_rates(tmp_path, auto)
    assert label == "one NVIDIA H100 80GB HBM3, bf16+channels_last"
    assert rates == {"train_m0": 0.5, "train_adversarial": 1.0, "train_ssl": 1.5, "train_translator": 2.0,
                     "translate": 2.5, "pseudo_label": 3.0, "evaluate": 0.2}
    fp32 = merged(schema_defaults(), {"results": "r", "runtime": {"bf16": False}})
    assert gpu_rates(tmp_path, fp32)[1]["train_translator"] == 4.0
    # a CPU check at toy sizes gives no GPU rate, and no proof gives none either
    (tmp_path / "summary.json").write_text(json.dumps(summary | {"device": "cpu", "tiny": True}))
    assert gpu_rates(tmp_path, auto)[1] == {} and gpu_rates(None, auto)[1] == {}


def test_rates_file_feeds_the_time_plan(tmp_path):
    """rates.json: the GPU proof's rates where there are any, else the measured ones; the plan reads its steps."""
    import json

    from bdl.plan import read_rates

    by_stage = {"train_m0": {"rates": [2.0, 3.0], "unit": "step"},
                "translate": {"rates": [0.5], "unit": "source frame"}, "evaluate": {"rates": [], "unit": "val frame"}}
    here = rates_of(by_stage, "GPU (proof not run)", {}, "2-core CPU", "preset.yaml")
    assert here["device"] == "2-core CPU" and here["stages"]["train_m0"] == {"seconds": 3.0, "unit": "step"}
    assert "evaluate" not in here["stages"]
    on_gpu = rates_of(by_stage, "one H100, bf16+channels_last", {"train_m0": 0.4, "train_ssl": 0.5}, "cpu", "p.yaml")
    assert on_gpu["device"].startswith("one H100")
    assert on_gpu["stages"] == {"train_m0": {"seconds": 0.4, "unit": "step"}}
    path = tmp_path / "rates.json"
    path.write_text(json.dumps(here))
    assert read_rates(path) == {"device": "2-core CPU", "stages": {"train_m0": 3.0}}  # steps only: the plan's unit
