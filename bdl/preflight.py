"""Checks the workflow makes when it parses the config, before any job: where torchvision keeps its
ImageNet weights, and whether a configured weights file exists and fits the backbone. Torch-free except
for the fit check of a local weights file, which needs the model (or, for the reference's backbones, the
manifest of the reference's files: bdl.models.reference_manifest)."""

import os
from pathlib import Path

# torchvision's IMAGENET1K_V1 files (a test checks these against torchvision's own URLs)
IMAGENET_FILES = {"resnet101": "resnet101-63fe2227.pth", "resnet50": "resnet50-0676ba61.pth",
                  "resnet18": "resnet18-f37072fd.pth", "vgg16": "vgg16-397923af.pth"}
IMAGENET_URL = "https://download.pytorch.org/models/"


def torch_hub_dir() -> Path:
    """Where ``torch.hub`` caches downloads, by the same rule as ``torch.hub.get_dir``."""
    if os.environ.get("TORCH_HOME"):
        return Path(os.path.expanduser(os.environ["TORCH_HOME"])) / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(os.path.expanduser(cache)) / "torch" / "hub"


def imagenet_file(backbone: str) -> Path:
    return torch_hub_dir() / "checkpoints" / IMAGENET_FILES[backbone]


def weights_refusal(seg: dict) -> str | None:
    """One line naming the key when ``segmenter.weights`` cannot be used as configured, else None."""
    weights, backbone = seg["weights"], seg["backbone"]
    if weights in (None, "", "none"):
        return None
    if weights == "imagenet":
        if backbone not in IMAGENET_FILES:
            return (f"config key 'segmenter.weights': torchvision has no ImageNet weights for backbone '{backbone}' "
                    f"(only {', '.join(IMAGENET_FILES)}); use none or a local file")
        path = imagenet_file(backbone)
        if not path.is_file():
            home = os.environ.get("TORCH_HOME")
            return (f"config key 'segmenter.weights': imagenet needs torchvision's {path.name}, not found in "
                    f"{path.parent} (TORCH_HOME{'=' + home if home else ' unset'}); download "
                    f"{IMAGENET_URL}{path.name} there once, or set TORCH_HOME to a folder holding "
                    f"hub/checkpoints/{path.name}, or set segmenter.weights to a local file")
        return None
    path = Path(weights)
    if not path.is_file():
        return f"config key 'segmenter.weights': weights file '{path}' not found"
    from bdl import BDLError
    from bdl.models import build_segmenter
    from bdl.models.reference_weights import REFERENCE_BACKBONES, convert

    try:
        if backbone in REFERENCE_BACKBONES:  # checked against the reference's manifest, no model built
            convert(backbone, path)
        else:
            build_segmenter(backbone, weights=str(path), width=seg["width"], aspp_dilations=seg["aspp_dilations"])
    except BDLError as exc:
        return f"config key 'segmenter.weights': {exc}"
    return None
