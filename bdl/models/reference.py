"""The reference's own segmenters, so that its initial weights and released models load as they are: DeepLab v2
on the Caffe-style ResNet-101 (``resnet101_ref``) and its FCN-8s VGG16 (``vgg16_ref``).

Both take this pipeline's input, RGB in [0, 1] (bdl.loops.segmenter.to_unit), and turn it into the reference's
own (BGR, 0-255, minus its IMG_MEAN; liyunsheng13/BDL data/__init__.py, the same for both models), so the loop
feeds them like any other segmenter. Module names follow ours (``backbone``/``classifier``, ``features.N``);
bdl.models.reference_weights maps the reference's key names onto them.
"""

import torch
import torch.nn.functional as F
from torch import nn

from bdl.data.labels import NUM_CLASSES
from bdl.errors import BDLError
from bdl.models.deeplab import ASPP, DeepLabBase

REFERENCE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)


class CaffeInput(nn.Module):
    """RGB in [0, 1] -> BGR in [0, 255] minus the reference's per-channel mean."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(REFERENCE_MEAN_BGR).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return x.flip(1) * 255.0 - self.mean


class CaffeBottleneck(nn.Module):
    """Caffe's (MSRA's) bottleneck: the stride sits in the first 1x1 conv, the dilation in the 3x3."""

    def __init__(self, cin, width, stride=1, dilation=1, downsample=False):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 4 * width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if downsample:
            self.downsample = nn.Sequential(nn.Conv2d(cin, 4 * width, 1, stride, bias=False), nn.BatchNorm2d(4 * width))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class CaffeResNet101(nn.Module):
    """DeepLab v2's trunk: ceil-mode max pool; layer2 strides; every block of layer3 dilates by 2 and of layer4
    by 4 (torchvision's replace_stride_with_dilation leaves each layer's first block at the previous dilation)."""

    def __init__(self, blocks=(3, 4, 23, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        cin = 64
        for i, (width, n, stride, dilation) in enumerate(zip((64, 128, 256, 512), blocks, (1, 2, 1, 1), (1, 1, 2, 4)),
                                                         start=1):
            layer = [CaffeBottleneck(cin, width, stride, dilation, downsample=True)]
            layer += [CaffeBottleneck(4 * width, width, 1, dilation) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*layer))
            cin = 4 * width
        self.out_channels = cin

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _no_imagenet(backbone):
    raise BDLError(f"torchvision's ImageNet weights do not fit backbone '{backbone}' (RGB with ImageNet statistics, "
                   "another trunk); give the reference's initial model or a released model as a local file")


class ReferenceDeepLab(DeepLabBase):
    """The reference's DeepLab v2 ResNet-101 (model/deeplab.py), logits upsampled with align_corners=True as its
    training does. Its BatchNorm affine parameters never train (the reference freezes them); ``freeze_bn`` also
    keeps the running statistics, which the reference's train mode does not."""

    align_corners = True

    def __init__(self, num_classes=NUM_CLASSES, weights="none", freeze_bn=False, dilations=(6, 12, 18, 24)):
        super().__init__()
        self.normalize = CaffeInput()
        self.backbone = CaffeResNet101()
        self.classifier = ASPP(self.backbone.out_channels, num_classes, dilations)
        self.ignored_weights = []
        if weights == "imagenet":
            _no_imagenet("resnet101_ref")
        if weights not in (None, "", "none"):
            from bdl.models.reference_weights import load_reference

            self.ignored_weights = load_reference(self, "resnet101_ref", weights)
        self.freeze_batchnorm(freeze_bn, affine_too=True)


POOL3, POOL4 = 17, 24  # ``features`` slices ending after pool3 and pool4


class ReferenceFCN8s(nn.Module):
    """The reference's FCN-8s VGG16 (model/fcn8s.py, "at once" FCN-8s): the input padded by 100 in conv1_1, fc6 a
    7x7 conv without padding, bilinear deconvolutions that never train (x2, x2, x8, no bias), pool4 and
    pool3 scaled by 0.01 and 0.0001 before their score layers, and the fixed crops 5, 9 and 31 that line the maps
    up. Weights and biases train at 1x and 2x the learning rate, as in the reference; no width but VGG16's."""

    def __init__(self, num_classes=NUM_CLASSES, weights="none"):
        super().__init__()
        self.normalize = CaffeInput()
        layers, cin = [], 3
        for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=100 if cin == 3 else 1), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.drop = nn.Dropout2d(0.5)
        self.score_fr = nn.Conv2d(4096, num_classes, 1)
        self.score_pool4 = nn.Conv2d(512, num_classes, 1)
        self.score_pool3 = nn.Conv2d(256, num_classes, 1)
        for m in (self.score_fr, self.score_pool4, self.score_pool3):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        self.upscore2 = _bilinear_deconv(num_classes, 4, 2)
        self.upscore_pool4 = _bilinear_deconv(num_classes, 4, 2)
        self.upscore8 = _bilinear_deconv(num_classes, 16, 8)
        self.ignored_weights = []
        if weights == "imagenet":
            _no_imagenet("vgg16_ref")
        if weights not in (None, "", "none"):
            from bdl.models.reference_weights import load_reference

            self.ignored_weights = load_reference(self, "vgg16_ref", weights)

    def param_groups(self, lr):
        convs = [m for m in self.modules() if type(m) is nn.Conv2d]
        return [{"params": [m.weight for m in convs], "lr": lr, "lr_mult": 1.0},
                {"params": [m.bias for m in convs], "lr": 2 * lr, "lr_mult": 2.0}]

    def forward(self, x):
        h, w = x.shape[-2:]
        pool3 = self.features[:POOL3](self.normalize(x))
        pool4 = self.features[POOL3:POOL4](pool3)
        pool5 = self.features[POOL4:](pool4)
        score = self.score_fr(self.drop(F.relu(self.fc7(self.drop(F.relu(self.fc6(pool5)))))))
        score = self.upscore2(score)
        score = score + _crop(self.score_pool4(pool4 * 0.01), 5, score.shape[-2:])
        score = self.upscore_pool4(score)
        score = score + _crop(self.score_pool3(pool3 * 0.0001), 9, score.shape[-2:])
        return _crop(self.upscore8(score), 31, (h, w)).contiguous()


def _crop(x, offset, hw):
    return x[:, :, offset:offset + hw[0], offset:offset + hw[1]]


def _bilinear_deconv(channels: int, kernel: int, stride: int) -> nn.ConvTranspose2d:
    """A channel-wise bilinear upsampling as a transposed conv, frozen (the reference never trains it)."""
    deconv = nn.ConvTranspose2d(channels, channels, kernel, stride, bias=False)
    factor = (kernel + 1) // 2
    center = factor - 1 if kernel % 2 else factor - 0.5
    ramp = 1 - (torch.arange(kernel, dtype=torch.float64) - center).abs() / factor
    with torch.no_grad():
        deconv.weight.zero_()
        deconv.weight[range(channels), range(channels)] = (ramp[:, None] * ramp[None, :]).float()
    deconv.weight.requires_grad_(False)
    return deconv
