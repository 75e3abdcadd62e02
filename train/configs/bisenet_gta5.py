from train.config import Config

CONFIG = Config(
    variant="bisenet_gta5",
    description="BiSeNet trained on GTA5 only, tested on Cityscapes: the domain-shift baseline",
    labeled="gta5",
    batch_size=4,
)
