# Two commands do all set-up on a fresh machine:
#   make demo   -- create .venv, install xphyda, run the demo on the bundled model and data
#   make test   -- create .venv, install xphyda with test extras, run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the CPU wheel of torch (an unpinned torch would pull a multi-GB CUDA build)
	$(BIN)/pip install --quiet "torch==2.13.0" || $(BIN)/pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/pip install --quiet -e ".[test,docs]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/phyda demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not slow"

docs: $(STAMP)
	PYTHON=$(BIN)/python scripts/build_docs.sh

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

.PHONY: install demo test test-slow docs
