"""One small file per variant of the report; each defines ``CONFIG``."""

REPORT_ORDER = (
    "deeplabv2_cityscapes",
    "bisenet_cityscapes",
    "bisenet_gta5",
    "bisenet_gta5_aug1",
    "bisenet_gta5_aug2",
    "bisenet_gta5_aug12",
    "bisenet_gta5_fda",
    "bisenet_gta5_dacs",
)
