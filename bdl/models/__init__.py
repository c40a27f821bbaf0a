"""Model families: DeepLab v2 and FCN-8s segmenters (M), the output-space discriminator (D), CycleGAN (F).
``factory`` builds them by name; this package re-exports its functions."""

from bdl.models.factory import (
    SEGMENTER_BACKBONES,
    build_segmenter,
    build_translator,
    load_segmenter,
    segmenter_arch,
    segmenter_from_checkpoint,
)

__all__ = ["SEGMENTER_BACKBONES", "build_segmenter", "build_translator", "load_segmenter", "segmenter_arch",
           "segmenter_from_checkpoint"]
