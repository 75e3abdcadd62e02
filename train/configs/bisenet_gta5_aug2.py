from train.config import Config

CONFIG = Config(
    variant="bisenet_gta5_aug2",
    description="GTA5 -> Cityscapes with Aug2: colour jitter, Gaussian blur, gamma (each p=0.5)",
    augment="aug2",
    batch_size=4,
)
