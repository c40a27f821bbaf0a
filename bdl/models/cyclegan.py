"""CycleGAN's translator pieces: the ResNet generator, the 70x70 PatchGAN and the image pool."""

import torch
import torch.nn.functional as F
from torch import nn

from bdl.sizes import min_side, patch_d_layers


def to_gan(images: torch.Tensor, device) -> torch.Tensor:
    """uint8 -> [-1, 1], the generator's range."""
    return images.to(device, non_blocking=True).float().div_(127.5).sub_(1)


def gan_to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], the segmenter's input range."""
    return (x + 1) * 0.5


def init_gan_weights(module: nn.Module) -> None:
    """CycleGAN's initialisation of every convolution: weights N(0, 0.02), biases zero."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)


class ResnetBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch))

    def forward(self, x):
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, two stride-2 downsamplings, ``n_blocks`` residual blocks, two upsamplings, c7s1-3, tanh.

    Works in [-1, 1]. Paper size: ngf=64, n_blocks=9. Any frame size: each stride-2 conv rounds an odd side
    up and each transposed conv doubles, so a side that is not a multiple of 2**n_down would come back
    larger (90 -> 92); the input is reflection-padded at the bottom and right up to that multiple and
    the output cropped back. Reflection, as the generator's own borders, so the padded strip looks like
    the image rather than a black or smeared edge the discriminator could learn to spot. Sides from
    ``min_size`` (5 for n_down=2).
    """

    def __init__(self, ngf=64, n_blocks=9, n_down=2):
        super().__init__()
        self.multiple = 2**n_down
        # the residual blocks' reflection padding needs a 2-pixel bottleneck, so a side must pad up to at
        # least two multiples; far below any discriminator's minimum
        self.min_size = self.multiple + 1
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        ch = ngf
        for _ in range(n_down):
            layers += [nn.Conv2d(ch, 2 * ch, 3, 2, 1), nn.InstanceNorm2d(2 * ch), nn.ReLU(True)]
            ch *= 2
        layers += [ResnetBlock(ch) for _ in range(n_blocks)]
        for _ in range(n_down):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(ch // 2),
                       nn.ReLU(True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, 3, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_gan_weights(self)

    def forward(self, x):
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.multiple, -w % self.multiple
        if not pad_h and not pad_w:
            return self.net(x)
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        return self.net(x)[..., :h, :w]


class PatchDiscriminator(nn.Module):
    """PatchGAN: with n_layers=3 each output logit sees a 70x70 patch of the input image. Images need at
    least ``min_size`` pixels a side (24 for n_layers=3)."""

    def __init__(self, ndf=64, n_layers=3):
        super().__init__()
        spec = patch_d_layers(n_layers)
        self.min_size = min_side(spec)
        k, s, p = spec[0]
        layers = [nn.Conv2d(3, ndf, k, s, p), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n, (k, s, p) in enumerate(spec[1:-1], start=1):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, k, s, p), nn.InstanceNorm2d(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, *spec[-1]))
        self.net = nn.Sequential(*layers)
        init_gan_weights(self)

    def forward(self, x):
        return self.net(x)


class ImagePool:
    """A history of generated images: D sees old fakes half the time, which damps oscillation."""

    def __init__(self, size=50, generator: torch.Generator | None = None, device="cpu"):
        self.size, self.images, self.gen, self.device = size, [], generator, device

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img)
                out.append(img)
            elif torch.rand((), generator=self.gen) < 0.5:
                i = int(torch.randint(0, self.size, (1,), generator=self.gen))
                out.append(self.images[i].clone())
                self.images[i] = img
            else:
                out.append(img)
        return torch.cat(out, 0)

    def state_dict(self):
        return {"images": [t.cpu() for t in self.images]}

    def load_state_dict(self, state):
        self.images = [t.to(self.device) for t in state["images"]]
