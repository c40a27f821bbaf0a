"""The reference's weight files onto ``resnet101_ref`` / ``vgg16_ref``: each key checked against the manifest of
the file it claims to be (bdl.models.reference_manifest), then renamed to ours.

Strict: every tensor of the model is filled from the file, except under two explicit rules that the loader
states when it applies them. (1) A file without the DeepLab classifier (``layer5``: the Caffe ImageNet trunk)
leaves the classifier at its N(0, 0.01) start. (2) In the DeepLab init (``Scale.`` keys) the classifier is
dropped, as the reference does whenever it trains 19 classes (its Deeplab() init loading skips ``layer5``), since
the init's is MS-COCO/VOC's 21-class one. An ImageNet classifier (``fc.*``) is ignored and listed. Any other key,
a missing one, or one of another shape stops the load with one line naming it.
"""

import sys
from dataclasses import dataclass, field

from bdl.errors import BDLError
from bdl.models import reference_manifest as ref

REFERENCE_BACKBONES = ("resnet101_ref", "vgg16_ref")
_DEEPLAB = "the reference's DeepLab v2 ResNet-101"
_FCN = "the reference's FCN-8s VGG16"


@dataclass
class Converted:
    state: dict  # our key -> tensor
    complete: bool  # every tensor of the model is in ``state`` (a released model, not an initial one)
    note: str  # what was loaded, and which rule applied, for the log
    ignored: list = field(default_factory=list)  # keys of the file the model has no place for


def _refuse_shape(path, key, tensor, want, what):
    if tuple(tensor.shape) != tuple(want):
        raise BDLError(f"{path}: tensor '{key}' is {tuple(tensor.shape)} in the file, {what} has {tuple(want)}")


def _bn_counter(key: str, known: dict) -> bool:
    base = key[: -len(ref.OPTIONAL_SUFFIX)]
    return key.endswith("." + ref.OPTIONAL_SUFFIX) and base + "running_mean" in known


def convert_deeplab(state: dict, path, num_classes: int = 19) -> Converted:
    prefix = ref.INIT_PREFIX if any(k.startswith(ref.INIT_PREFIX) for k in state) else ""
    trunk, head = ref.resnet101_trunk(), ref.aspp_head(num_classes)
    out, ignored, dropped, heads = {}, [], [], []
    unknown = (f"is not in {_DEEPLAB} (its model/deeplab.py key names, or all of them under 'Scale.' in its "
               "DeepLab init)")
    for key, tensor in state.items():
        name = key[len(prefix):] if key.startswith(prefix) else None
        if name in trunk:
            _refuse_shape(path, key, tensor, trunk[name], _DEEPLAB)
            out[f"backbone.{name}"] = tensor
        elif name is not None and _bn_counter(name, trunk):
            out[f"backbone.{name}"] = tensor
        elif name in head and prefix:
            dropped.append(key)
        elif name in head:
            _refuse_shape(path, key, tensor, head[name], _DEEPLAB)
            _, _, i, param = name.split(".")  # layer5.conv2d_list.<i>.<param>
            out[f"classifier.branches.{i}.{param}"] = tensor
            heads.append(name)
        elif name in ref.IMAGENET_FC:
            ignored.append(key)
        else:
            raise BDLError(f"{path}: tensor '{key}' {unknown}")
    for name in trunk:
        if f"backbone.{name}" not in out:
            raise BDLError(f"{path}: tensor '{prefix}{name}' of {_DEEPLAB} is not in the file")
    if heads:
        missing = [k for k in head if k not in heads]
        if missing:
            raise BDLError(f"{path}: tensor '{missing[0]}' of {_DEEPLAB}'s classifier (layer5) is not in the file")
        return Converted(out, True, f"weights {path}: {_DEEPLAB} with its {num_classes}-class classifier, every "
                                    "tensor loaded", ignored)
    if dropped:
        note = (f"weights {path}: the reference's DeepLab init ('Scale.' keys): trunk loaded; its "
                f"{state[dropped[0]].shape[0]}-class classifier (layer5) dropped, as the reference does when it trains "
                f"{num_classes} classes, so the classifier starts from N(0, 0.01)")
    else:
        note = (f"weights {path}: a reference ResNet-101 trunk without classifier (layer5): trunk loaded, the "
                "classifier starts from N(0, 0.01)")
    return Converted(out, False, note, ignored)


def _fcn_names() -> dict:
    """The reference's FCN-8s key -> ours (its convN_M are torchvision's ``features`` positions here)."""
    names = {}
    for (conv, _, _), index in zip(ref.VGG16_CONVS, ref.VGG16_FEATURE_INDEX):
        names |= {f"{conv}.weight": f"features.{index}.weight", f"{conv}.bias": f"features.{index}.bias"}
    return names


def convert_fcn8s(state: dict, path, num_classes: int = 19) -> Converted:
    want, names = ref.fcn8s(num_classes), _fcn_names()
    out = {}
    for key, tensor in state.items():
        if key not in want:
            raise BDLError(f"{path}: tensor '{key}' is not in {_FCN} (its model/fcn8s.py key names)")
        _refuse_shape(path, key, tensor, want[key], _FCN)
        out[names.get(key, key)] = tensor
    for key in want:
        if key not in state:
            raise BDLError(f"{path}: tensor '{key}' of {_FCN} is not in the file")
    return Converted(out, True, f"weights {path}: {_FCN} ({num_classes} classes), every tensor loaded")


def _refuse_torchvision(path):
    from pathlib import Path

    from bdl.hub import IMAGENET_FILES

    # torchvision's ResNet-101 has the reference trunk's very key names and shapes, not its weights' meaning
    if Path(path).name in IMAGENET_FILES.values():
        raise BDLError(f"{path}: torchvision's ImageNet weights (RGB, ImageNet statistics, another trunk) have the "
                       "reference's key names but not its layout; use backbone resnet101/vgg16 with them")


def convert(backbone: str, path, num_classes: int = 19) -> Converted:
    """Read a weights file (never unpickled) and convert it for ``backbone``; BDLError naming the first bad key."""
    from bdl.artifacts import read_state_dict

    _refuse_torchvision(path)
    state = read_state_dict(path)
    if backbone == "resnet101_ref":
        return convert_deeplab(state, path, num_classes)
    if backbone == "vgg16_ref":
        return convert_fcn8s(state, path, num_classes)
    raise ValueError(f"'{backbone}' is not one of the reference's backbones {REFERENCE_BACKBONES}")


def load_converted(model, converted: Converted, path) -> None:
    missing, unexpected = model.load_state_dict(converted.state, strict=False)
    left = [k for k in missing if not (k.endswith(ref.OPTIONAL_SUFFIX)
                                       or (not converted.complete and k.startswith("classifier.")))]
    if left or unexpected:  # the manifest and the model disagree: a bug here, not a bad file
        raise RuntimeError(f"{path}: manifest and model differ (missing {left[:3]}, unexpected {unexpected[:3]})")


def load_reference(model, backbone: str, path) -> list:
    """Fill ``model`` from a reference file, say what was loaded on stderr; returns the ignored keys."""
    converted = convert(backbone, path, model_classes(model))
    load_converted(model, converted, path)
    print(converted.note, file=sys.stderr)
    return converted.ignored


def model_classes(model) -> int:
    head = model.classifier.branches[0] if hasattr(model, "classifier") else model.score_fr
    return head.out_channels
