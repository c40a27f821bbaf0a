"""Pieces the segmenters share: ImageNet input normalisation and loading trunk weights."""

from pathlib import Path

import torch
from torch import nn

from bdl import BDLError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """Inputs arrive in [0, 1]; trunks expect ImageNet statistics."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


def load_trunk_weights(module: nn.Module, weights: str, imagenet_loader) -> None:
    """'none' keeps the random init, 'imagenet' asks torchvision, anything else is a local state dict."""
    if weights in (None, "", "none"):
        return
    if weights == "imagenet":
        try:
            state = imagenet_loader()
        except Exception as exc:  # offline, proxy, corrupt cache: all end the same way for the user
            raise BDLError(f"could not fetch torchvision's ImageNet weights ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:120]}); set segmenter.weights to a local file") from None
    else:
        path = Path(weights)
        if not path.is_file():
            raise BDLError(f"{path}: backbone weights file not found")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise BDLError(f"{weights}: no tensor in these weights fits the backbone")
    module.load_state_dict(usable, strict=False)
