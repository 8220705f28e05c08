# Everything a new user needs: `make run` (set up, then the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build pip installs; override on another machine, e.g. TORCH_SPEC="torch torchvision".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# Where pip takes torch from; on a machine without a GPU, PyTorch's CPU-only wheels avoid the
# multi-gigabyte CUDA build: make run TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: chromium chromium-early setup run serve summary train book test test-browser test-fast test-device-script nbval lint clean

setup: $(VENV)/.installed

# pip's progress and "Requirement already satisfied" lines stay quiet; errors still print
PIP_QUIET := --quiet --progress-bar off --disable-pip-version-check --no-input

$(VENV)/.installed: pyproject.toml
	@echo "setting up $(VENV) (torch, then transfer_lib[test,book]): a few minutes the first time"
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "error: '$(PYTHON) -m venv' failed: \
	on Debian or Ubuntu install the venv module first (sudo apt-get install python3-venv), \
	or set PYTHON=/path/to/python3.10+"; exit 2; }
	@$(PY) -m pip install $(PIP_QUIET) --upgrade pip
	@$(PY) -m pip install $(PIP_QUIET) $(TORCH_SPEC) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	@$(PY) -m pip install $(PIP_QUIET) -e ".[test,book]"
	@touch $@

# The book's profile for `make run` / `make book`: smoke | cpu | paper (see transfer_lib/train/profiles.py).
PROFILE ?= cpu

# NATIVE=1: PyTorch's own CPU kernels and threads for the book (faster on AVX-512/AMX CPUs; the
# runs are then other draws of the committed seeds, checked against their spread, not equality).
NATIVE ?=

# Where `make serve` serves the built book.
PORT ?= 8000

## the main job on the embedded default: execute every chapter and build the book
run: book
	@echo "The book is at $(CURDIR)/_build/html/index.html"
	@echo "Serve it with 'make serve', then open http://localhost:$(PORT)/"

## serve the built book on http://localhost:$(PORT)/ (Ctrl-C stops it)
serve:
	@test -f _build/html/index.html || { echo "no book in _build/html: run 'make run' first"; exit 2; }
	@echo "Serving the book at http://localhost:$(PORT)/ (Ctrl-C to stop)"
	$(PY) -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

book: setup
	TRANSFER_PROFILE=$(PROFILE) TRANSFER_NATIVE=$(NATIVE) $(VENV)/bin/jupyter-book build . -W -n --keep-going

summary: setup
	$(PY) -m transfer_lib summary

train: setup
	$(PY) -m transfer_lib train --profile $(PROFILE)

## the whole test suite (what CI runs): lint, actionlint, unit tests (the Colab path
## included), chapters under nbval, the book build, then the built pages in headless Chromium.
## Chromium is looked for (or installed) first, so a machine without one stops in seconds.
## Every chapter runs once: nbval keeps what each printed in $(NB_CACHE) (book/conftest.py)
## and the build reads it from there; a chapter nbval did not pass is executed by the build.
NB_CACHE := _build/.nbval_cache
test: chromium-early setup chromium
	$(PY) -m ruff check transfer_lib tests book
	$(VENV)/bin/actionlint -no-color
	rm -rf $(NB_CACHE)
	TRANSFER_PROFILE=smoke TRANSFER_NB_CACHE=$(NB_CACHE) $(PY) -m pytest -q tests --nbval-lax book -m "not device_script and not browser" --durations=15
	$(PY) book/conftest.py _build/config-test.yml $(NB_CACHE)
	TRANSFER_PROFILE=smoke $(VENV)/bin/jupyter-book build . -W -n --keep-going --config _build/config-test.yml
	$(MAKE) --no-print-directory test-browser

## the pages of the built book (_build/html) in headless Chromium; screenshots in _build/screenshots
test-browser: setup chromium
	CHROMIUM="$$(cat $(VENV)/.chromium)" $(PY) -m pytest -q tests/test_browser.py -m browser

# The browser for the browser test (tests/find_chromium.sh): $(CHROMIUM), a chromium on PATH,
# Playwright's own, else Debian's package or Playwright's download where the machine allows it.
CHROMIUM ?=
chromium-early:
	@CHROMIUM="$(CHROMIUM)" bash tests/find_chromium.sh --early $(PY) > /dev/null
chromium: setup
	@CHROMIUM="$(CHROMIUM)" bash tests/find_chromium.sh $(PY) > $(VENV)/.chromium.tmp \
		&& mv $(VENV)/.chromium.tmp $(VENV)/.chromium

## the GPU check script at toy scale on the CPU (minutes): kept out of `make test` for CI's budget
test-device-script: setup
	$(PY) -m pytest -q tests -m device_script

nbval: setup
	TRANSFER_PROFILE=smoke $(PY) -m pytest -q --nbval-lax book

## the fast tier (about a minute on two cores): model, data, statistics, recipes, CLI errors;
## no notebooks, book, browser, training runs or device script (chosen in tests/conftest.py)
test-fast: setup
	$(PY) -m pytest -q -m fast

lint: setup
	$(PY) -m ruff check transfer_lib tests

clean:
	rm -rf _build .pytest_cache
