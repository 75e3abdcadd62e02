# Two commands do all the set-up on a fresh machine:
#   make app    create .venv if needed, install requirements, start the Streamlit app
#   make test   the same set-up, then ruff and the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: app test lint browser demo app-test screenshots
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

# No e-mail prompt and no usage statistics: the app starts unattended on a fresh machine.
app: $(STAMP)
	$(PY) -m streamlit run app.py --server.showEmailPrompt false --browser.gatherUsageStats false \
		--client.toolbarMode viewer

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The browser tests drive Debian's Chromium (never a downloaded browser): install it when missing.
browser:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium fonts-dejavu-core; }

# One pytest-xdist worker per core, each on one thread (tests/conftest.py says how modules are shared out).
test: lint browser
	$(PY) -m pytest -n auto

demo: $(STAMP)
	$(PY) -m train demo

# The app's tests only: headless page tests, then the browser tests (need /usr/bin/chromium).
app-test: $(STAMP) browser
	$(PY) -m pytest -n auto tests/test_app_support.py tests/test_app.py tests/e2e

# The browser tests re-take docs/screenshots/<page>.png (otherwise they write to a temporary folder).
screenshots: $(STAMP) browser
	SEGDEMO_SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/e2e
