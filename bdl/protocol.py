"""The two protocols of resizing, scoring and pseudo-labelling: this project's (``bdl``) and the reference code's
(``reference``: liyunsheng13/BDL, whose data loaders, evaluation.py and SSL.py this follows step by step).

bdl:       images resized with PIL's BILINEAR; M's logits upsampled to its input inside the model, then for
           scoring once more to the label's size (align_corners=False) and the softmax taken there; class
           thresholds are the exact medians of the stored max probabilities (the mean of the middle two).
reference: images resized with PIL's BICUBIC (labels NEAREST either way); the softmax taken on M's logits at its
           output stride and the probabilities, not the logits, upsampled once with align_corners=True (to the
           label's size for scoring, to the model's input for pseudo-labels), argmax and max of those; a class
           threshold is the element at index round(n / 2) (numpy's half-to-even) of the class's sorted max
           probabilities, 0 for a class never predicted, capped as in either protocol.

No torch or PIL here: the workflow reads it at parse time.
"""

PROTOCOLS = ("bdl", "reference")

# PIL's resampling filter of the images, by name (bdl.data.readers maps the name to PIL's constant)
IMAGE_FILTER = {"bdl": "bilinear", "reference": "bicubic"}


def image_filter(protocol: str) -> str:
    if protocol not in IMAGE_FILTER:
        raise ValueError(f"protocol '{protocol}' is not one of {', '.join(PROTOCOLS)}")
    return IMAGE_FILTER[protocol]
