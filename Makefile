# Every target sets itself up from nothing: a virtual environment in .venv with the CPU
# build of torch that pip finds on this kind of machine, then the project in editable mode.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

$(BIN)/hf-charrnn: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)" -e ".[dev]"
	touch $@

.PHONY: install demo test test-fast
install: $(BIN)/hf-charrnn

demo: install  ## train the default Shakespeare model on the CPU, then generate
	$(BIN)/hf-charrnn demo

test: install  ## the whole suite, slow end-to-end tests included
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"
