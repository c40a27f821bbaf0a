"""Config errors stop the workflow at start, with one line naming the key, before any job runs."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def dry_run(tmp_path, cfg: dict):
    cfg.setdefault("results", str(tmp_path / "results"))
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--dry-run", "--configfile", str(path)],
                          cwd=REPO, capture_output=True, text=True)


@pytest.mark.parametrize("cfg, message", [
    ({"roundz": 2}, "config key 'roundz' is not a known key"),
    ({"segmenter": {"bakbone": "x"}}, "config key 'segmenter.bakbone' is not a known key"),
    ({"rounds": 0}, "config key 'rounds': 0 is less than the minimum of 1"),
    ({"rounds": "two"}, "config key 'rounds': 'two' is not of type 'integer'"),
    ({"pseudo_label": {"threshold": 1.5}}, "config key 'pseudo_label.threshold': 1.5 is greater than the maximum"),
    ({"pseudo_label": {"threshold": 0}}, "config key 'pseudo_label.threshold': 0 is less than or equal to"),
    ({"pseudo_label": {"mode": "median"}}, "config key 'pseudo_label.mode'"),
    ({"segmenter": {"iterations": {"ssl": -5}}}, "config key 'segmenter.iterations.ssl': -5 is less than"),
    ({"segmenter": {"backbone": "resnet152"}}, "config key 'segmenter.backbone'"),
    ({"source": {"root": "/data/GTA5"}}, "'source.root' and 'target.root': give both"),
    ({"runtime": {"gpus_per_job": 0}}, "config key 'runtime.gpus_per_job': 0 is less than the minimum of 1"),
    ({"m0_target_bn": True, "segmenter": {"backbone": "vgg16"}}, "config key 'm0_target_bn': segmenter.backbone vgg16"),
    ({"runtime": {"gpus_per_job": 3}},
     "config key 'segmenter.batch_size': 8 does not divide among runtime.gpus_per_job (3) processes"),
    ({"runtime": {"gpus_per_job": 8}},
     "config key 'translator.batch_size': 4 does not divide among runtime.gpus_per_job (8) processes"),
])
def test_bad_config_is_one_line_naming_the_key(tmp_path, cfg, message):
    proc = dry_run(tmp_path, cfg)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_results_folder_not_writable(tmp_path):
    (tmp_path / "afile").write_text("")
    proc = dry_run(tmp_path, {"results": str(tmp_path / "afile" / "results")})
    assert proc.returncode != 0
    assert "config key 'results': folder" in proc.stderr and "is not writable" in proc.stderr


def test_user_file_overrides_only_what_it_names(tmp_path):
    proc = dry_run(tmp_path, {"segmenter": {"iterations": {"ssl": 7}}, "rounds": 1, "ssl_steps": 1})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert "--iterations 7" in out or "train_ssl" in out
    assert "round2" not in out


def _leaves(node, schema, path=()):
    """(dotted key, config value, schema default) for every leaf of config.yaml."""
    for key, value in node.items():
        sub = schema["properties"][key]
        if isinstance(value, dict):
            yield from _leaves(value, sub, (*path, key))
        else:
            yield ".".join((*path, key)), value, sub.get("default", "(no default)")


def test_schema_defaults_are_the_demo_config():
    # a key a user's file leaves out must mean what config/README.md and config.yaml say it means
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    differ = [(k, v, d) for k, v, d in _leaves(cfg, schema) if v != d]
    assert differ == []
