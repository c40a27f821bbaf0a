"""segmenter.weights is checked when the workflow parses its config: torchvision's ImageNet file missing
offline, a path that does not exist, a file that does not fit the backbone; and trunks never half load."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from conftest import REPO

from bdl import BDLError, hub
from bdl.models import build_segmenter


def _dry(tmp_path, seg: dict, env: dict):
    cfg = {"results": str(tmp_path / "res"), "segmenter": seg}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--dry-run", "--configfile", str(path)],
                          cwd=REPO, capture_output=True, text=True, env=os.environ | env)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    return proc, errors


def test_imagenet_file_names_and_cache_folder_are_torchvision_s(monkeypatch, tmp_path):
    for backbone, name in hub.IMAGENET_FILES.items():
        assert torchvision.models.get_model_weights(backbone).IMAGENET1K_V1.url == hub.IMAGENET_URL + name
    for env in ({"TORCH_HOME": str(tmp_path / "th")}, {"TORCH_HOME": "", "XDG_CACHE_HOME": str(tmp_path / "x")},
                {"TORCH_HOME": "", "XDG_CACHE_HOME": ""}):
        for key, value in env.items():
            monkeypatch.setenv(key, value) if value else monkeypatch.delenv(key, raising=False)
        assert hub.torch_hub_dir() == Path(torch.hub.get_dir())


def test_imagenet_offline_is_refused_at_parse_time_naming_the_file_and_torch_home(tmp_path):
    home = tmp_path / "empty_torch_home"
    home.mkdir()
    proc, errors = _dry(tmp_path, {"backbone": "resnet101", "weights": "imagenet"}, {"TORCH_HOME": str(home)})
    assert proc.returncode != 0 and len(errors) == 1 and "Traceback" not in proc.stderr
    assert errors[0].startswith(f"error: config key 'segmenter.weights': imagenet needs torchvision's "
                                f"resnet101-63fe2227.pth, not found in {home}/hub/checkpoints (TORCH_HOME={home})")
    assert not (tmp_path / "res").exists()
    # the same file in that folder passes the check (contents are the jobs' business)
    (home / "hub" / "checkpoints").mkdir(parents=True)
    (home / "hub" / "checkpoints" / "resnet101-63fe2227.pth").write_bytes(b"")
    proc, errors = _dry(tmp_path, {"backbone": "resnet101", "weights": "imagenet"}, {"TORCH_HOME": str(home)})
    assert proc.returncode == 0 and not errors, proc.stderr[-2000:]


@pytest.mark.parametrize("case", ["missing", "other_backbone", "missing_key", "mini_imagenet"])
def test_weights_file_that_cannot_be_used_is_refused_at_parse_time(tmp_path, case):
    state = torchvision.models.resnet18(weights=None).state_dict()
    seg = {"backbone": "resnet18", "weights": str(tmp_path / "w.pth")}
    if case == "missing":
        expect = f"weights file '{tmp_path / 'w.pth'}' not found"
    elif case == "other_backbone":
        torch.save(state, tmp_path / "w.pth")
        seg["backbone"] = "resnet_mini"
        expect = "tensor 'conv1.weight' is (64, 3, 7, 7) in the file, the backbone needs (16, 3, 7, 7)"
    elif case == "missing_key":
        del state["layer3.0.conv1.weight"]
        torch.save(state, tmp_path / "w.pth")
        expect = "tensor 'layer3.0.conv1.weight' of the backbone is not in the file"
    else:
        seg = {"backbone": "resnet_mini", "weights": "imagenet"}
        expect = "torchvision has no ImageNet weights for backbone 'resnet_mini'"
    proc, errors = _dry(tmp_path, seg, {})
    assert proc.returncode != 0 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert errors[0].startswith("error: config key 'segmenter.weights': ") and expect in errors[0]


def test_a_fitting_file_loads_every_trunk_tensor_and_names_what_it_ignored(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    m = build_segmenter("resnet18", weights=str(tmp_path / "r18.pth"))
    assert torch.equal(m.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert m.ignored_weights == ["fc.weight", "fc.bias"]
    # FCN-8s: the score head is optional in a file (ImageNet VGG has none), the trunk is not
    fcn = build_segmenter("vgg16", width=1)
    trunk = {k: v for k, v in fcn.state_dict().items() if not k.startswith("score_")}
    torch.save(trunk, tmp_path / "fcn_trunk.pth")
    assert build_segmenter("vgg16", width=1, weights=str(tmp_path / "fcn_trunk.pth")).ignored_weights == []
    del trunk["fc7.weight"]
    torch.save(trunk, tmp_path / "fcn_bad.pth")
    with pytest.raises(BDLError, match="tensor 'fc7.weight' of the backbone is not in the file"):
        build_segmenter("vgg16", width=1, weights=str(tmp_path / "fcn_bad.pth"))
