from train.config import Config

CONFIG = Config(
    variant="bisenet_gta5_aug1",
    description="GTA5 -> Cityscapes with Aug1: horizontal flip (p=0.5)",
    augment="aug1",
    batch_size=4,
)
