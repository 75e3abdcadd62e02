from train.config import Config

CONFIG = Config(
    variant="bisenet_gta5_aug12",
    description="GTA5 -> Cityscapes with Aug1+Aug2",
    augment="aug12",
    batch_size=8,
)
