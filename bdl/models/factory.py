"""Models by name: M from a backbone name or a checkpoint's recorded architecture, F and F_inv from theirs."""

from bdl.data.labels import NUM_CLASSES
from bdl.models.cyclegan import ResnetGenerator
from bdl.models.deeplab import DeepLabV2
from bdl.models.fcn8s import FCN8s
from bdl.models.reference import ReferenceDeepLab, ReferenceFCN8s

# *_ref: the reference's own models (Caffe-style trunk, BGR input), for its initial weights and released models
SEGMENTER_BACKBONES = ("resnet101", "resnet50", "resnet18", "resnet_mini", "vgg16", "resnet101_ref", "vgg16_ref")


def build_segmenter(backbone: str, num_classes: int = NUM_CLASSES, weights: str = "none", width: int = 64,
                    freeze_bn: bool = False, aspp_dilations=(6, 12, 18, 24)):
    """M by backbone name. ``weights``: 'none', 'imagenet' (torchvision download) or a local .pth file.
    The ``*_ref`` backbones have the reference's fixed sizes: ``width`` does not apply to them."""
    if backbone == "resnet101_ref":
        return ReferenceDeepLab(num_classes, weights=weights, freeze_bn=freeze_bn, dilations=tuple(aspp_dilations))
    if backbone == "vgg16_ref":
        return ReferenceFCN8s(num_classes, weights=weights)
    if backbone == "vgg16":
        return FCN8s(num_classes, weights=weights, width=width)
    if backbone in SEGMENTER_BACKBONES:
        return DeepLabV2(num_classes, backbone=backbone, weights=weights, width=width, freeze_bn=freeze_bn,
                         dilations=tuple(aspp_dilations))
    raise ValueError(f"unknown segmenter backbone '{backbone}' (choose from {', '.join(SEGMENTER_BACKBONES)})")


def segmenter_arch(args) -> dict:
    """The constructor arguments a checkpoint records so later stages rebuild the same M."""
    return {"backbone": args.backbone, "width": args.width, "freeze_bn": bool(args.freeze_bn),
            "aspp_dilations": list(args.aspp_dilations), "num_classes": NUM_CLASSES}


def segmenter_from_checkpoint(state: dict, path="checkpoint"):
    """Rebuild M from a checkpoint's recorded architecture and load its weights (never pickle)."""
    from bdl.artifacts import load_weights

    arch = dict(state["arch"])
    model = build_segmenter(arch.pop("backbone"), weights="none", **arch)
    load_weights(model, state["model"], path, "segmenter")
    return model


def build_translator(arch: dict):
    """F (source to target) and F_inv (target to source) from a checkpoint's recorded ``ngf``/``n_blocks``."""
    return (ResnetGenerator(arch["ngf"], arch["n_blocks"]), ResnetGenerator(arch["ngf"], arch["n_blocks"]))


def load_segmenter(path):
    """M from a segmenter checkpoint on disk (``segmenter.pt``), in eval mode: ready for inference."""
    from bdl.artifacts import load_checkpoint

    return segmenter_from_checkpoint(load_checkpoint(path, kind="segmenter"), path).eval()
