"""FCN-8s on VGG16, the paper's second segmenter: scores from pool3, pool4 and fc7 fused at stride 8."""

import torch.nn.functional as F
from torch import nn

from bdl.data.labels import NUM_CLASSES
from bdl.models.common import Normalize, load_trunk_weights

_VGG16 = (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M")  # in units of width


class FCN8s(nn.Module):
    def __init__(self, num_classes=NUM_CLASSES, weights="none", width=64):
        super().__init__()
        self.normalize = Normalize()
        layers, cin = [], 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(cin, v * width, 3, padding=1), nn.ReLU(inplace=True)]
                cin = v * width
        self.features = nn.Sequential(*layers)  # indices match torchvision's vgg16.features
        fc = 64 * width
        self.fc6 = nn.Conv2d(8 * width, fc, 7, padding=3)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        self.drop = nn.Dropout2d(0.5)
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        self.score_pool4 = nn.Conv2d(8 * width, num_classes, 1)
        self.score_pool3 = nn.Conv2d(4 * width, num_classes, 1)
        for m in (self.score_fr, self.score_pool4, self.score_pool3):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

        def imagenet():
            import torchvision

            state = torchvision.models.VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
            out = {k: v for k, v in state.items() if k.startswith("features.")}
            # fc6/fc7 of the classifier become convolutions, as in the FCN paper
            out["fc6.weight"] = state["classifier.0.weight"].view(4096, 512, 7, 7)
            out["fc6.bias"] = state["classifier.0.bias"]
            out["fc7.weight"] = state["classifier.3.weight"].view(4096, 4096, 1, 1)
            out["fc7.bias"] = state["classifier.3.bias"]
            return out

        # the score layers are FCN's new head: a file may hold them (a trained FCN-8s) or not (ImageNet VGG16)
        self.ignored_weights = load_trunk_weights(self, weights, imagenet, optional=("score_",))

    def param_groups(self, lr):
        head = [*self.score_fr.parameters(), *self.score_pool4.parameters(), *self.score_pool3.parameters()]
        ids = {id(p) for p in head}
        return [{"params": [p for p in self.parameters() if id(p) not in ids], "lr": lr, "lr_mult": 1.0},
                {"params": head, "lr": 10 * lr, "lr_mult": 10.0}]

    def forward(self, x):
        # FCN-8s proper pads the input by 100 and crops each upsampled score map at fixed offsets (5, 9, 31)
        # to line it up with the skip it joins; that alignment holds only for sizes its strides divide.
        # Bilinear upsampling to each skip's own size lines them up at any size (odd ones too, where the
        # ceil-mode pools round up), and the last one returns logits at the input's size.
        h, w = x.shape[-2:]
        x = self.normalize(x)
        pool3 = self.features[:17](x)
        pool4 = self.features[17:24](pool3)
        pool5 = self.features[24:](pool4)
        score = self.score_fr(self.drop(F.relu(self.fc7(self.drop(F.relu(self.fc6(pool5)))))))
        score = F.interpolate(score, size=pool4.shape[-2:], mode="bilinear", align_corners=False)
        score = score + self.score_pool4(pool4)
        score = F.interpolate(score, size=pool3.shape[-2:], mode="bilinear", align_corners=False)
        score = score + self.score_pool3(pool3)
        return F.interpolate(score, size=(h, w), mode="bilinear", align_corners=False)
