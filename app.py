"""The Streamlit app: ``streamlit run app.py``. Navigation only; each page is a file in ``pages/``."""

from pages import common

common.setup_app().run()
