"""The smallest frame each model takes, from its layers' kernels and strides. No torch: the workflow refuses a
too-small frame or crop when it parses the config, before any job.

The generator and the segmenters take any size (they pad or upsample back to the input's); the two
discriminators shrink the frame with unpadded-enough 4x4 convolutions until one logit per patch remains,
so below a minimum their last convolution has nothing to slide over.
"""

# (kernel, stride, padding) of each convolution, in order
OUTPUT_D_LAYERS = [(4, 2, 1)] * 5  # AdaptSegNet/BDL's output-space D: five 4x4 stride-2 convs


def patch_d_layers(n_layers: int = 3) -> list[tuple[int, int, int]]:
    """PatchGAN: a stride-2 stem, n_layers convs (stride 2 but the last), a stride-1 logit conv."""
    return [(4, 2, 1)] + [(4, 2 if n < n_layers else 1, 1) for n in range(1, n_layers + 1)] + [(4, 1, 1)]


def out_side(side: int, layers) -> int:
    for k, s, p in layers:
        side = (side + 2 * p - k) // s + 1
        if side < 1:
            return 0
    return side


def min_side(layers) -> int:
    """The smallest side that leaves every convolution of ``layers`` at least one output."""
    side = 1
    while out_side(side, layers) < 1:
        side += 1
    return side


OUTPUT_D_MIN = min_side(OUTPUT_D_LAYERS)  # 32
PATCH_D_MIN = min_side(patch_d_layers())  # 24


def too_small(size_wh, minimum: int) -> bool:
    return size_wh is not None and min(size_wh) < minimum


def size_refusal(cfg: dict, frames: dict) -> str | None:
    """The first model input of ``cfg`` below its discriminator's minimum, as one line naming the key to
    change; None when all fit. ``frames``: domain -> ((width, height), where those frames come from: a file,
    or None for the domain's size key)."""
    if cfg["rounds"] < 1:  # M0 alone trains without either discriminator
        return None
    checks = [("segmenter", OUTPUT_D_MIN, "the output-space discriminator"),
              ("translator", PATCH_D_MIN, "the PatchGAN discriminator")]
    for block, minimum, model in checks:
        crop = cfg[block]["crop"]
        if crop is not None:
            if too_small(crop, minimum):
                return (f"config key '{block}.crop': {crop[0]}x{crop[1]} is smaller than {model}'s minimum of "
                        f"{minimum}x{minimum} pixels")
            continue
        for domain, (size, where) in frames.items():
            if not too_small(size, minimum):
                continue
            fix = f"{block}.crop (padded with ignored pixels) to at least {minimum}x{minimum}"
            if where is None:  # the size key itself
                return (f"config key '{domain}.size': {size[0]}x{size[1]} is smaller than {model}'s minimum of "
                        f"{minimum}x{minimum} pixels; set a larger size or {fix}")
            return (f"{domain} frames are {size[0]}x{size[1]} ({where}), smaller than {model}'s minimum of "
                    f"{minimum}x{minimum} pixels; set {domain}.size (resized on load) or {fix}")
    return None
