"""Pieces the segmenters share: ImageNet input normalisation and loading trunk weights."""

import torch
from torch import nn

from bdl.errors import BDLError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def strided_logits(model: nn.Module, x):
    """M's logits at its own output resolution: a DeepLab's at stride 8 (``strided``); an FCN-8s's own output,
    which its last (frozen or bilinear) upsampling already brings to the input's size."""
    return model.strided(x) if hasattr(model, "strided") else model(x)


class Normalize(nn.Module):
    """Inputs arrive in [0, 1]; trunks expect ImageNet statistics."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


def load_trunk_weights(module: nn.Module, weights: str, imagenet_loader, optional=()) -> list[str]:
    """'none' keeps the random init, 'imagenet' asks torchvision, anything else is a local state dict.

    Every tensor of ``module`` must be in the file with its shape, except those under the ``optional``
    prefixes (a new head, zero-initialised, that a file may or may not hold); the first one that is missing
    or of another shape is refused by name, so a trunk is never half loaded. Tensors of the file that the
    module lacks (ImageNet's classifier) are ignored and returned, for the stage to say so.
    """
    if weights in (None, "", "none"):
        return []
    if weights == "imagenet":
        try:
            state = imagenet_loader()
        except Exception as exc:  # offline, proxy, corrupt cache: all end the same way for the user
            from bdl.hub import torch_hub_dir

            raise BDLError(f"could not fetch torchvision's ImageNet weights into {torch_hub_dir() / 'checkpoints'} "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); download them there once "
                           "(TORCH_HOME moves the folder) or set segmenter.weights to a local file") from None
    else:
        from bdl.artifacts import read_state_dict

        state = read_state_dict(weights)
    own = module.state_dict()
    for key, tensor in own.items():
        if key in state and tuple(state[key].shape) != tuple(tensor.shape):
            raise BDLError(f"{weights}: tensor '{key}' is {tuple(state[key].shape)} in the file, the backbone "
                           f"needs {tuple(tensor.shape)}")
        # BatchNorm's step counter is not a weight; files saved before torch 0.4.1 do not have it
        if key not in state and not key.startswith(tuple(optional)) and not key.endswith("num_batches_tracked"):
            raise BDLError(f"{weights}: tensor '{key}' of the backbone is not in the file")
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return [k for k in state if k not in own]
