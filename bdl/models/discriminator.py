"""The output-space discriminator D of AdaptSegNet/BDL: it sees softmax maps, not images."""

from torch import nn

from bdl.data.labels import NUM_CLASSES
from bdl.sizes import OUTPUT_D_LAYERS, OUTPUT_D_MIN


class OutputDiscriminator(nn.Module):
    """Five 4x4 stride-2 convs (ndf, 2ndf, 4ndf, 8ndf, 1) with LeakyReLU 0.2; one logit per patch.
    Maps need at least ``min_size`` (32) pixels a side."""

    min_size = OUTPUT_D_MIN

    def __init__(self, num_classes=NUM_CLASSES, ndf=64):
        super().__init__()
        chans = [num_classes, ndf, 2 * ndf, 4 * ndf, 8 * ndf, 1]
        layers = []
        for cin, cout, (k, s, p) in zip(chans[:-1], chans[1:], OUTPUT_D_LAYERS):
            layers += [nn.Conv2d(cin, cout, k, s, p), nn.LeakyReLU(0.2, inplace=True)]
        self.net = nn.Sequential(*layers[:-1])  # the logit conv has no activation

    def forward(self, x):
        return self.net(x)
