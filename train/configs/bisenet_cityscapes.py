from train.config import Config

CONFIG = Config(
    variant="bisenet_cityscapes",
    description="BiSeNet (ResNet-18) trained and tested on Cityscapes: the real-time upper bound (Table 2)",
    labeled="cityscapes",
    batch_size=4,
)
