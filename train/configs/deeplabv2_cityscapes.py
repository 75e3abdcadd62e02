from train.config import Config

CONFIG = Config(
    variant="deeplabv2_cityscapes",
    description="DeepLabV2 (ResNet-101) trained and tested on Cityscapes: the upper bound (report Table 1)",
    model="deeplabv2",
    labeled="cityscapes",
    batch_size=2,
    head_lr_mult=10.0,
)
