"""Key names and shapes of the reference's weight files, in the order its code saves them. Derived from the
reference's model definitions (facts, no code of theirs).

- ``deeplab_released``: BDL's final and SSL-step DeepLab models (GTA5_deeplab, SYNTHIA_deeplab, SSL_step1/2),
  ``model.state_dict()`` of liyunsheng13/BDL model/deeplab.py: ResNet-101 (Bottleneck x [3, 4, 23, 3],
  downsample in every layer's first block) and ``layer5``, four 3x3 convs 2048 -> 19 with bias, summed.
- ``deeplab_init``: DeepLab_resnet_pretrained_init-f81d91e8.pth (MS-COCO), the init BDL's README links
  (AdaptSegNet's): the same network saved inside a ``Scale`` wrapper (isht7/pytorch-deeplab-resnet
  init_net_surgery.py converting DeepLab v2's init.caffemodel), so every key starts with ``Scale.``; its layer5
  has 21 classes (that converter's default, the caffemodel's fc1_voc12_c0..3).
- ``resnet101_caffe``: AdaptSegNet's Caffe ImageNet ResNet-101 (per its tracker): the trunk's keys without prefix (a
  loader stripping one name component turned them into 'weight', '0.conv1.weight', ...). Whether it holds an
  ImageNet classifier is not documented; ``fc.weight``/``fc.bias`` are accepted and ignored if present.
- ``fcn8s``: BDL's VGG models (GTA5_VGG, SYNTHIA_VGG) and its VGG16-FCN initial weights for GTA5 and SYNTHIA,
  which its VGG16_FCN8s loads strictly: ``model.state_dict()`` of model/fcn8s.py with 19 classes.

BatchNorm's ``num_batches_tracked`` (torch >= 0.4.1; BDL used 0.4.0) may or may not be in a file.
"""

BN_KEYS = ("weight", "bias", "running_mean", "running_var")
OPTIONAL_SUFFIX = "num_batches_tracked"
RESNET101_BLOCKS = (3, 4, 23, 3)
ASPP_KEYS = tuple(f"layer5.conv2d_list.{i}.{p}" for i in range(4) for p in ("weight", "bias"))
INIT_PREFIX = "Scale."
INIT_CLASSES = 21
IMAGENET_FC = {"fc.weight": (1000, 2048), "fc.bias": (1000,)}
# positions of VGG16's convolutions in ``features`` (torchvision's numbering, as in bdl.models.fcn8s)
VGG16_FEATURE_INDEX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
# FCN-8s VGG16 convolutions: name, in, out (the 3x3 trunk; conv1_1 pads by 100)
VGG16_CONVS = (("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
               ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
               ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
               ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512))


def _bn(name: str, channels: int) -> dict:
    return {f"{name}.{k}": (channels,) for k in BN_KEYS}


def resnet101_trunk() -> dict:
    """conv1, bn1, then each Bottleneck's conv1/bn1, conv2/bn2, conv3/bn3 and (first block) downsample.0/.1."""
    keys = {"conv1.weight": (64, 3, 7, 7)} | _bn("bn1", 64)
    cin = 64
    for layer, (width, blocks) in enumerate(zip((64, 128, 256, 512), RESNET101_BLOCKS), start=1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            keys[f"{p}.conv1.weight"] = (width, cin, 1, 1)
            keys |= _bn(f"{p}.bn1", width)
            keys[f"{p}.conv2.weight"] = (width, width, 3, 3)
            keys |= _bn(f"{p}.bn2", width)
            keys[f"{p}.conv3.weight"] = (4 * width, width, 1, 1)
            keys |= _bn(f"{p}.bn3", 4 * width)
            if b == 0:
                keys[f"{p}.downsample.0.weight"] = (4 * width, cin, 1, 1)
                keys |= _bn(f"{p}.downsample.1", 4 * width)
            cin = 4 * width
    return keys


def aspp_head(classes: int) -> dict:
    return {k: ((classes, 2048, 3, 3) if k.endswith("weight") else (classes,)) for k in ASPP_KEYS}


def fcn8s(classes: int = 19) -> dict:
    keys = {}
    for name, cin, cout in VGG16_CONVS:
        keys |= {f"{name}.weight": (cout, cin, 3, 3), f"{name}.bias": (cout,)}
    keys |= {"fc6.weight": (4096, 512, 7, 7), "fc6.bias": (4096,), "fc7.weight": (4096, 4096, 1, 1),
             "fc7.bias": (4096,)}
    for name, cin in (("score_fr", 4096), ("score_pool3", 256), ("score_pool4", 512)):
        keys |= {f"{name}.weight": (classes, cin, 1, 1), f"{name}.bias": (classes,)}
    # ConvTranspose2d weights are (in, out, k, k); no bias
    keys |= {"upscore2.weight": (classes, classes, 4, 4), "upscore8.weight": (classes, classes, 16, 16),
             "upscore_pool4.weight": (classes, classes, 4, 4)}
    return keys


def manifest(name: str, classes: int = 19) -> dict:
    """Every key of one of the reference's files (see the module docstring) with its shape, in file order."""
    if name == "deeplab_released":
        return resnet101_trunk() | aspp_head(classes)
    if name == "deeplab_init":
        return {INIT_PREFIX + k: v for k, v in (resnet101_trunk() | aspp_head(INIT_CLASSES)).items()}
    if name == "resnet101_caffe":
        return resnet101_trunk()
    if name == "fcn8s":
        return fcn8s(classes)
    raise ValueError(f"unknown reference file '{name}'")


MANIFESTS = ("deeplab_init", "deeplab_released", "resnet101_caffe", "fcn8s")
