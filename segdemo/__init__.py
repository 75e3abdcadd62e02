"""segdemo: synthetic-to-real semantic segmentation (GTA5 -> Cityscapes), the library behind the app.

One module per concept: labels, datasets, synthetic, augment, models, checkpoints, fda, dacs,
metrics, profiling, inference, viz. Importable without Streamlit.
"""

__version__ = "0.1.0"
