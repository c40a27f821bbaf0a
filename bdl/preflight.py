"""Checks the workflow makes when it parses the config, before any job: where torchvision keeps its
ImageNet weights, and whether a configured weights file exists and fits the backbone. Torch-free except
for the fit check of a local weights file, which needs the model (or, for the reference's backbones, the
manifest of the reference's files: bdl.models.reference_manifest)."""

import os
from pathlib import Path

from bdl.hub import IMAGENET_FILES, IMAGENET_URL, imagenet_file


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
    from bdl.errors import BDLError
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
