# Two commands do all the set-up on a fresh machine:
#   make app    create .venv if needed, install requirements, start the Streamlit app
#   make test   the same set-up, then ruff and the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: app test lint demo

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

app: $(STAMP)
	$(PY) -m streamlit run app.py

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m train demo
