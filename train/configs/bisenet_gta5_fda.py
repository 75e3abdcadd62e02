from train.config import Config

CONFIG = Config(
    variant="bisenet_gta5_fda",
    description=(
        "GTA5 -> Cityscapes with Aug1+Aug2 and FDA: source images take target low-frequency amplitude"
    ),
    augment="aug12",
    method="fda",
    fda_beta=0.01,  # the FDA paper also uses 0.05 and 0.09 (see MBT in `python -m train evaluate --mbt`)
    batch_size=4,
)
