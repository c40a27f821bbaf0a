"""DeepLab v2: a dilated ResNet trunk (output stride 8) and an ASPP classifier of summed dilated 3x3 convs."""

import torch.nn.functional as F
from torch import nn

from bdl.data.labels import NUM_CLASSES
from bdl.models.common import Normalize, load_trunk_weights


class BasicBlock(nn.Module):
    """ResNet-18's block with dilation (torchvision's refuses dilation > 1); same parameter names."""

    def __init__(self, cin, cout, stride=1, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class BasicTrunk(nn.Module):
    """ResNet-18 layout at any width; layers 3 and 4 dilate (2, 4) instead of striding, for stride 8."""

    def __init__(self, width=64, blocks=(2, 2, 2, 2)):
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        specs = [(w, w, 1, 1), (w, 2 * w, 2, 1), (2 * w, 4 * w, 1, 2), (4 * w, 8 * w, 1, 4)]
        for i, ((cin, cout, stride, dil), n) in enumerate(zip(specs, blocks), start=1):
            layer = [BasicBlock(cin, cout, stride, dil)] + [BasicBlock(cout, cout, 1, dil) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*layer))
        self.out_channels = 8 * w

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class TorchvisionTrunk(nn.Module):
    """ResNet-50/101 from torchvision with layers 3 and 4 dilated (output stride 8), classifier removed."""

    def __init__(self, name):
        super().__init__()
        import torchvision  # ~1 s of import (torch._dynamo via torchvision.ops): only where used

        net = getattr(torchvision.models, name)(weights=None, replace_stride_with_dilation=[False, True, True])
        for key in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, key, getattr(net, key))
        self.out_channels = 2048

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ASPP(nn.Module):
    """Four parallel dilated 3x3 convs straight to class scores, summed (DeepLab v2, not v3's concat)."""

    def __init__(self, cin, num_classes, dilations=(6, 12, 18, 24)):
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(cin, num_classes, 3, 1, d, d) for d in dilations)
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x):
        return sum(branch(x) for branch in self.branches)


class DeepLabBase(nn.Module):
    """What every DeepLab v2 here shares: ``normalize`` -> ``backbone`` -> summed-ASPP ``classifier``, logits
    upsampled to the input; optionally BatchNorm kept in eval mode while training."""

    align_corners = False

    def freeze_batchnorm(self, freeze_bn: bool, affine_too: bool = False):
        self.freeze_bn = freeze_bn
        if freeze_bn or affine_too:
            for m in self.backbone.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.requires_grad_(False)
                    m.bias.requires_grad_(False)

    def train(self, mode=True):
        super().train(mode)
        if self.freeze_bn:  # with batch 1 on 512px crops, batch statistics are noise: keep ImageNet's
            for m in self.backbone.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def param_groups(self, lr):
        """The classifier learns 10x faster than the pretrained trunk, as in DeepLab and BDL."""
        return [{"params": [p for p in self.backbone.parameters() if p.requires_grad], "lr": lr, "lr_mult": 1.0},
                {"params": list(self.classifier.parameters()), "lr": 10 * lr, "lr_mult": 10.0}]

    def strided(self, x):
        """Logits at the output stride (1/8), before any upsampling: what the reference's evaluation and
        pseudo-labelling take the softmax of (bdl.protocol)."""
        return self.classifier(self.backbone(self.normalize(x)))

    def forward(self, x):
        h, w = x.shape[-2:]
        return F.interpolate(self.strided(x), size=(h, w), mode="bilinear", align_corners=self.align_corners)


class DeepLabV2(DeepLabBase):
    def __init__(self, num_classes=NUM_CLASSES, backbone="resnet101", weights="none", width=64, freeze_bn=False,
                 dilations=(6, 12, 18, 24)):
        super().__init__()
        self.normalize = Normalize()
        if backbone in ("resnet50", "resnet101"):
            self.backbone = TorchvisionTrunk(backbone)
            tv_name = backbone
        else:
            blocks = (2, 2, 2, 2) if backbone == "resnet18" else (1, 1, 1, 1)
            self.backbone = BasicTrunk(64 if backbone == "resnet18" else width, blocks)
            tv_name = "resnet18"
        self.classifier = ASPP(self.backbone.out_channels, num_classes, dilations)

        def imagenet():
            import torchvision

            enum = torchvision.models.get_model_weights(tv_name)
            return enum.IMAGENET1K_V1.get_state_dict(progress=False)

        self.ignored_weights = load_trunk_weights(self.backbone, weights, imagenet)
        self.freeze_batchnorm(freeze_bn)
