"""The reference's own files load: its DeepLab init ('Scale.' keys, MS-COCO), its released DeepLab and VGG models,
AdaptSegNet's Caffe ImageNet ResNet-101 and the VGG16-FCN initial weights, each built from the manifest of key
names and shapes derived from the reference's model definitions (random values). A prefixed, renamed, mis-shaped
or incomplete file is refused in one line naming the key, when the workflow parses its config. And the
converted models compute what the reference computes: each forward pass is written out below from the
reference's description (plain torch.nn.functional on the file's tensors) and compared with ours."""

import re

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import run_stage, snakemake, target_flags, tiny_config

from bdl import BDLError, preflight
from bdl.artifacts import load_checkpoint
from bdl.models import build_segmenter, load_segmenter
from bdl.models.reference_manifest import MANIFESTS, manifest

MEAN_BGR = torch.tensor([104.00698793, 116.66876762, 122.67891434]).view(1, 3, 1, 1)
BACKBONE = {"deeplab_init": "resnet101_ref", "deeplab_released": "resnet101_ref", "resnet101_caffe": "resnet101_ref",
            "fcn8s": "vgg16_ref"}
VGG_CONVS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2",
             "conv4_3", "conv5_1", "conv5_2", "conv5_3")
VGG_INDEX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # torchvision's vgg16.features positions


def random_state(name: str, seed: int = 0) -> dict:
    """The manifest's keys and shapes with random values of tame scale (logits of order 1 at the end)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in manifest(name).items():
        if len(shape) == 1 and not re.match(r"(Scale\.)?(conv\d_\d|fc\d|score_\w+|layer5\.\S+)\.bias$", key):
            kind = key.rsplit(".", 1)[1]  # a BatchNorm tensor
            if kind in ("running_var", "weight"):
                t = 0.5 + torch.rand(shape, generator=g)
            else:
                t = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            t = 0.01 * torch.randn(shape, generator=g)
        else:
            fan_in = shape[1] * shape[2] * shape[3]
            t = torch.randn(shape, generator=g) * (2 / fan_in) ** 0.5
        out[key] = t
    for key in out:
        if key.endswith(("conv1.weight", "conv1_1.weight")) and "layer" not in key:
            out[key] /= 100.0  # the first layer meets BGR 0-255 input, as Caffe's trained ones do
        elif key.endswith("bn3.weight"):
            out[key] /= 10.0  # each residual branch adds a little: 33 blocks stay of order 1
    if "fc.weight" in out:
        out.pop("fc.weight")
    return out


def placeholder_state(name: str) -> dict:
    """The manifest's keys and shapes without the memory: one stored zero per tensor (for refusal tests)."""
    return {k: torch.zeros(1).expand(shape) for k, shape in manifest(name).items()}


def ours(name: str, key: str) -> str | None:
    """Where a reference key lands in our model (None: not loaded, by an explicit rule)."""
    key = key.removeprefix("Scale.")
    if name == "fcn8s":
        conv, _, param = key.partition(".")
        return f"features.{VGG_INDEX[VGG_CONVS.index(conv)]}.{param}" if conv in VGG_CONVS else key
    m = re.fullmatch(r"layer5\.conv2d_list\.(\d)\.(\w+)", key)
    if m:
        return None if name == "deeplab_init" else f"classifier.branches.{m[1]}.{m[2]}"
    return None if key.startswith("fc.") else f"backbone.{key}"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Each manifest as a file of random values; resnet101_caffe also with an ImageNet classifier."""
    folder = tmp_path_factory.mktemp("reference")
    out = {}
    for i, name in enumerate(MANIFESTS):
        state = random_state(name, i)
        if name == "resnet101_caffe":
            state |= {"fc.weight": torch.randn(1000, 2048), "fc.bias": torch.randn(1000)}
        torch.save(state, folder / f"{name}.pth")
        out[name] = (folder / f"{name}.pth", state)
    return out


def test_manifests_hold_the_reference_s_keys_and_shapes():
    init, released, trunk, fcn = (manifest(n) for n in MANIFESTS)
    # ResNet-101: conv1 + 33 bottlenecks x 3 convs + 4 downsamples = 104 convs, each with a BatchNorm of 4 tensors
    assert len(trunk) == 104 * 5 and len(released) == len(init) == 104 * 5 + 8 and len(fcn) == 39
    assert list(init)[:3] == ["Scale.conv1.weight", "Scale.bn1.weight", "Scale.bn1.bias"]
    assert init["Scale.layer5.conv2d_list.3.weight"] == (21, 2048, 3, 3)
    assert released["layer5.conv2d_list.0.bias"] == (19,)
    assert released["layer2.0.conv1.weight"] == (128, 256, 1, 1)  # the stride sits here, in the 1x1
    assert released["layer3.22.bn3.running_var"] == (1024,)
    assert released["layer4.0.downsample.0.weight"] == (2048, 1024, 1, 1)
    assert list(released).index("layer1.0.bn3.running_var") < list(released).index("layer1.0.downsample.0.weight")
    assert fcn["fc6.weight"] == (4096, 512, 7, 7) and fcn["upscore8.weight"] == (19, 19, 16, 16)
    assert "upscore2.bias" not in fcn and fcn["score_pool3.weight"] == (19, 256, 1, 1)


@pytest.mark.parametrize("name", MANIFESTS)
def test_reference_file_loads_with_no_missing_or_unexpected_key(files, name, capsys):
    path, state = files[name]
    model = build_segmenter(BACKBONE[name], weights=str(path))
    note = capsys.readouterr().err
    mine = model.state_dict()
    placed = {ours(name, k): k for k in state if ours(name, k)}
    assert set(placed) <= set(mine)  # nothing of the file is put where the model has no tensor
    for key, tensor in mine.items():
        if key in placed:
            assert torch.equal(tensor, state[placed[key]]), key
        else:  # what the file may lack, by the rules the loader states
            assert key.endswith("num_batches_tracked") or (key.startswith("classifier.") and name in (
                "deeplab_init", "resnet101_caffe")), key
    assert str(path) in note and "loaded" in note
    if name == "deeplab_init":
        assert "21-class classifier (layer5) dropped" in note
    assert model.ignored_weights == (["fc.weight", "fc.bias"] if name == "resnet101_caffe" else [])


def test_batchnorm_counters_of_newer_torch_load_too(files, tmp_path):
    path, state = files["deeplab_released"]
    counters = {k.replace("running_var", "num_batches_tracked"): torch.tensor(7) for k in state
                if k.endswith("running_var")}
    torch.save(state | counters, tmp_path / "w.pth")
    model = build_segmenter("resnet101_ref", weights=str(tmp_path / "w.pth"))
    assert int(model.backbone.layer3[5].bn2.num_batches_tracked) == 7


def _edit(name, how):
    state = placeholder_state(name)
    if how == "prefixed":
        return {f"module.{k}": v for k, v in state.items()}
    kind, key, arg = how
    if kind == "rename":
        return {(arg if k == key else k): v for k, v in state.items()}
    if kind == "reshape":
        return state | {key: torch.zeros(1).expand(arg)}
    return {k: v for k, v in state.items() if k != key}


REFUSED = [
    ("deeplab_released", "prefixed", "tensor 'module.conv1.weight' is not in the reference's DeepLab v2 ResNet-101"),
    ("deeplab_init", ("rename", "Scale.layer2.0.conv1.weight", "layer2.0.conv1.weight"),
     "tensor 'layer2.0.conv1.weight' is not in the reference's DeepLab v2 ResNet-101"),
    ("deeplab_released", ("rename", "layer5.conv2d_list.1.weight", "layer5.branches.1.weight"),
     "tensor 'layer5.branches.1.weight' is not in"),
    ("deeplab_released", ("reshape", "layer3.4.conv2.weight", (256, 256, 1, 1)),
     "tensor 'layer3.4.conv2.weight' is (256, 256, 1, 1) in the file, the reference's DeepLab v2 ResNet-101 has "
     "(256, 256, 3, 3)"),
    ("deeplab_released", ("reshape", "layer5.conv2d_list.0.weight", (21, 2048, 3, 3)),
     "tensor 'layer5.conv2d_list.0.weight' is (21, 2048, 3, 3) in the file"),
    ("deeplab_init", ("drop", "Scale.layer4.2.bn3.running_var", None),
     "tensor 'Scale.layer4.2.bn3.running_var' of the reference's DeepLab v2 ResNet-101 is not in the file"),
    ("deeplab_released", ("drop", "layer5.conv2d_list.3.bias", None),
     "tensor 'layer5.conv2d_list.3.bias' of the reference's DeepLab v2 ResNet-101's classifier (layer5) is not in"),
    ("fcn8s", "prefixed", "tensor 'module.conv1_1.weight' is not in the reference's FCN-8s VGG16"),
    ("fcn8s", ("rename", "conv1_1.weight", "features.0.weight"), "tensor 'features.0.weight' is not in"),
    ("fcn8s", ("reshape", "score_fr.weight", (21, 4096, 1, 1)),
     "tensor 'score_fr.weight' is (21, 4096, 1, 1) in the file, the reference's FCN-8s VGG16 has (19, 4096, 1, 1)"),
    ("fcn8s", ("drop", "upscore8.weight", None), "tensor 'upscore8.weight' of the reference's FCN-8s VGG16 is not in"),
]


def _seg(name, path):
    return {"backbone": BACKBONE[name], "weights": str(path), "width": 16, "aspp_dilations": [6, 12, 18, 24]}


@pytest.mark.parametrize("name, how, expect", REFUSED, ids=lambda v: v if isinstance(v, str) and len(v) < 20 else "")
def test_a_file_that_does_not_fit_is_refused_naming_the_key(tmp_path, name, how, expect):
    torch.save(_edit(name, how), tmp_path / "w.pth")
    refusal = preflight.weights_refusal(_seg(name, tmp_path / "w.pth"))
    assert refusal.startswith(f"config key 'segmenter.weights': {tmp_path / 'w.pth'}: ") and "\n" not in refusal
    assert expect in refusal, refusal
    with pytest.raises(BDLError, match=re.escape(expect)):  # the stage's own load says the same
        build_segmenter(BACKBONE[name], weights=str(tmp_path / "w.pth"))


def test_torchvision_s_file_is_refused_for_the_reference_trunk(tmp_path):
    torch.save(placeholder_state("resnet101_caffe"), tmp_path / "resnet101-63fe2227.pth")
    refusal = preflight.weights_refusal(_seg("resnet101_caffe", tmp_path / "resnet101-63fe2227.pth"))
    assert "torchvision's ImageNet weights" in refusal and "use backbone resnet101" in refusal
    assert "torchvision has no ImageNet weights for backbone 'vgg16_ref'" in preflight.weights_refusal(
        {"backbone": "vgg16_ref", "weights": "imagenet"})


def test_fitting_files_pass_the_parse_time_check(files):
    for name, (path, _) in files.items():
        assert preflight.weights_refusal(_seg(name, path)) is None, name


def test_snakemake_dry_run_refuses_a_prefixed_file_in_one_line(tmp_path):
    torch.save(_edit("deeplab_released", "prefixed"), tmp_path / "bad.pth")
    cfg = tiny_config(tmp_path / "res")
    cfg["segmenter"] |= {"backbone": "resnet101_ref", "weights": str(tmp_path / "bad.pth")}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path / "cfg.yaml", "--dry-run", check=False)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert errors[0] == (f"error: config key 'segmenter.weights': {tmp_path / 'bad.pth'}: tensor 'module.conv1.weight' "
                         "is not in the reference's DeepLab v2 ResNet-101 (its model/deeplab.py key names, or all of "
                         "them under 'Scale.' in its DeepLab init)")
    assert not (tmp_path / "res").exists()


def _bn(sd, x, name):
    """Frozen BatchNorm as the affine map it is at inference."""
    scale = sd[f"{name}.weight"] / torch.sqrt(sd[f"{name}.running_var"] + 1e-5)
    shift = sd[f"{name}.bias"] - sd[f"{name}.running_mean"] * scale
    return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


def reference_deeplab(sd, rgb):
    """DeepLab v2 as the reference describes it: BGR 0-255 minus the mean; 7x7/2 conv, ceil-mode 3x3/2 max pool;
    bottlenecks whose first 1x1 conv strides (layer2) and whose 3x3 dilates (2 in all of layer3, 4 in all of
    layer4), a projection shortcut in each layer's first block; four dilated 3x3 classifiers summed; bilinear
    upsampling with aligned corners."""
    x = rgb[:, [2, 1, 0]] * 255 - MEAN_BGR
    x = F.relu(_bn(sd, F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
    for layer, (blocks, stride, dil) in enumerate(zip((3, 4, 23, 3), (1, 2, 1, 1), (1, 1, 2, 4)), start=1):
        for b in range(blocks):
            p, s = f"layer{layer}.{b}", stride if b == 0 else 1
            y = F.relu(_bn(sd, F.conv2d(x, sd[f"{p}.conv1.weight"], stride=s), f"{p}.bn1"))
            y = F.relu(_bn(sd, F.conv2d(y, sd[f"{p}.conv2.weight"], padding=dil, dilation=dil), f"{p}.bn2"))
            y = _bn(sd, F.conv2d(y, sd[f"{p}.conv3.weight"]), f"{p}.bn3")
            short = _bn(sd, F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=s), f"{p}.downsample.1") if b == 0 else x
            x = F.relu(y + short)
    logits = sum(F.conv2d(x, sd[f"layer5.conv2d_list.{i}.weight"], sd[f"layer5.conv2d_list.{i}.bias"], padding=d,
                          dilation=d) for i, d in enumerate((6, 12, 18, 24)))
    return F.interpolate(logits, size=rgb.shape[-2:], mode="bilinear", align_corners=True)


def reference_fcn8s(sd, rgb):
    """FCN-8s as the reference describes it: BGR 0-255 minus the mean; VGG16 with conv1_1 padded by 100 and
    ceil-mode 2x2 pools; fc6 7x7 unpadded, fc7 1x1; score, x2 deconvolution, plus pool4 x 0.01 scored and
    cropped at 5; x2 deconvolution, plus pool3 x 0.0001 scored and cropped at 9; x8 deconvolution cropped at 31."""
    x = rgb[:, [2, 1, 0]] * 255 - MEAN_BGR
    pools = []
    for stage in (VGG_CONVS[:2], VGG_CONVS[2:4], VGG_CONVS[4:7], VGG_CONVS[7:10], VGG_CONVS[10:]):
        for conv in stage:
            x = F.relu(F.conv2d(x, sd[f"{conv}.weight"], sd[f"{conv}.bias"], padding=100 if conv == "conv1_1" else 1))
        x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        pools.append(x)
    x = F.relu(F.conv2d(x, sd["fc6.weight"], sd["fc6.bias"]))
    x = F.relu(F.conv2d(x, sd["fc7.weight"], sd["fc7.bias"]))
    x = F.conv_transpose2d(F.conv2d(x, sd["score_fr.weight"], sd["score_fr.bias"]), sd["upscore2.weight"], stride=2)
    h, w = x.shape[-2:]
    x = x + F.conv2d(pools[3] * 0.01, sd["score_pool4.weight"], sd["score_pool4.bias"])[:, :, 5:5 + h, 5:5 + w]
    x = F.conv_transpose2d(x, sd["upscore_pool4.weight"], stride=2)
    h, w = x.shape[-2:]
    x = x + F.conv2d(pools[2] * 0.0001, sd["score_pool3.weight"], sd["score_pool3.bias"])[:, :, 9:9 + h, 9:9 + w]
    x = F.conv_transpose2d(x, sd["upscore8.weight"], stride=8)
    return x[:, :, 31:31 + rgb.shape[2], 31:31 + rgb.shape[3]]


@pytest.mark.parametrize("name, forward", [("deeplab_released", reference_deeplab), ("fcn8s", reference_fcn8s)])
def test_converted_model_gives_the_reference_s_logits(files, name, forward):
    path, state = files[name]
    model = build_segmenter(BACKBONE[name], weights=str(path)).eval()
    # at 65x97 DeepLab's pool meets an odd map where ceil and floor agree; at 64x96 they differ
    for h, w in ((65, 97), (64, 96)) if name == "deeplab_released" else ((65, 97),):
        rgb = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            mine, theirs = model(rgb), forward(state, rgb)
        assert mine.shape == theirs.shape == (1, 19, h, w)
        assert theirs.abs().max() > 0.1  # a real signal, not a vanishing one
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)


def test_reference_batchnorm_and_learning_rates():
    m = build_segmenter("resnet101_ref").train()
    bns = [b for b in m.backbone.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    assert all(b.training and not b.weight.requires_grad for b in bns)  # affine frozen, as the reference
    assert all(not b.training for b in build_segmenter("resnet101_ref", freeze_bn=True).train().backbone.modules()
               if isinstance(b, torch.nn.BatchNorm2d))
    fcn = build_segmenter("vgg16_ref")
    groups = fcn.param_groups(1e-3)
    assert [g["lr_mult"] for g in groups] == [1.0, 2.0] and len(groups[0]["params"]) == 18  # 13 + fc6, fc7 + 3 scores
    assert not fcn.upscore8.weight.requires_grad  # a fixed bilinear upsampling, never trained


def test_released_model_imports_evaluates_and_an_init_is_refused(files, tiny_demo, tmp_path):
    path, state = files["deeplab_released"]
    run_stage("import_weights", "--backbone", "resnet101_ref", "--weights", path, "--out", tmp_path / "seg.pt")
    assert load_checkpoint(tmp_path / "seg.pt", kind="segmenter")["arch"]["backbone"] == "resnet101_ref"
    model = load_segmenter(tmp_path / "seg.pt")
    assert torch.equal(model.classifier.branches[2].weight, state["layer5.conv2d_list.2.weight"])
    assert torch.equal(model.backbone.layer3[22].bn3.running_var, state["layer3.22.bn3.running_var"])
    run_stage("evaluate", "--segmenter", tmp_path / "seg.pt", *target_flags(tiny_demo), "--threads", "2",
              "--out", tmp_path / "eval.json")
    assert "miou" in (tmp_path / "eval.json").read_text()
    proc = run_stage("import_weights", "--backbone", "resnet101_ref", "--weights", files["deeplab_init"][0],
                     "--out", tmp_path / "init.pt", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(
        f"error: {files['deeplab_init'][0]}: no trained classifier in the file")
    assert not (tmp_path / "init.pt").exists()
