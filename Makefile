# Everything a new user needs: `make run` (set up, then the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build pip installs; override on another machine, e.g. TORCH_SPEC="torch torchvision".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup run summary train book test test-fast test-device-script nbval lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[test,book,viz,predict,export]"
	touch $@

# The book's profile for `make run` / `make book`: smoke | cpu | paper (see transfer_lib/profiles.py).
PROFILE ?= cpu

## the main job on the embedded default: execute every chapter and build the book
run: book
	@echo "The book is at $(CURDIR)/_build/html/index.html"

book: setup
	TRANSFER_PROFILE=$(PROFILE) $(VENV)/bin/jupyter-book build . -W -n --keep-going

summary: setup
	$(PY) -m transfer_lib summary

train: setup
	$(PY) -m transfer_lib train --profile $(PROFILE)

## the whole test suite (what CI runs): lint, unit tests, chapters under nbval, the book build
test: setup
	$(PY) -m ruff check transfer_lib tests book
	TRANSFER_PROFILE=smoke $(PY) -m pytest -q tests --nbval-lax book -m "not device_script"
	TRANSFER_PROFILE=smoke $(VENV)/bin/jupyter-book build . -W -n --keep-going

## the GPU check script at toy scale on the CPU (minutes): kept out of `make test` for CI's budget
test-device-script: setup
	$(PY) -m pytest -q tests -m device_script

nbval: setup
	TRANSFER_PROFILE=smoke $(PY) -m pytest -q --nbval-lax book

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(PY) -m ruff check transfer_lib tests

clean:
	rm -rf _build .pytest_cache
