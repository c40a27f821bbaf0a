"""Where pretrained weights files live: torchvision's ImageNet file names and the ``torch.hub`` cache that holds
them. Shared by the models (which load them) and the workflow's parse-time checks (which look for them), below
both so that neither imports the other for it."""

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
