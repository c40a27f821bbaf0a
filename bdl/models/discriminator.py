"""The output-space discriminator D of AdaptSegNet/BDL: it sees softmax maps, not images."""

from torch import nn


class OutputDiscriminator(nn.Module):
    """Five 4x4 stride-2 convs (ndf, 2ndf, 4ndf, 8ndf, 1) with LeakyReLU 0.2; one logit per patch."""

    def __init__(self, num_classes=19, ndf=64):
        super().__init__()
        chans = [num_classes, ndf, 2 * ndf, 4 * ndf, 8 * ndf]
        layers = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(chans[-1], 1, 4, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
