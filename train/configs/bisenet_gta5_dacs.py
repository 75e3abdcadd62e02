from train.config import Config

CONFIG = Config(
    variant="bisenet_gta5_dacs",
    description="GTA5 -> Cityscapes with DACS: ClassMix of source onto target + EMA-teacher pseudo-labels",
    method="dacs",
    batch_size=4,
)
