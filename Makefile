# Everything a new user needs: `make run` (set up, then the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build pip installs; override on another machine, e.g. TORCH_SPEC="torch torchvision".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup run summary test test-fast lint book clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[test,book,viz,predict]"
	touch $@

## the main job on the embedded default
run: setup
	$(PY) -m transfer_lib summary

summary: setup
	$(PY) -m transfer_lib summary

## the whole test suite (what CI runs)
test: setup
	$(PY) -m ruff check transfer_lib tests
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(PY) -m ruff check transfer_lib tests

clean:
	rm -rf _build .pytest_cache
