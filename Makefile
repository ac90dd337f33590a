# Every target sets itself up from nothing: a virtual environment with the CPU build of torch that pip finds on this
# kind of machine, then the project in editable mode. The README's commands (make demo, make test) install the pinned,
# tested set of versions in constraints/pinned.txt, so they work the same on a fresh machine on any later day.
# CI also tests the floor of the supported range (constraints/floor.txt: the same set with the oldest supported
# transformers), and `make test-latest` tries the newest release of every dependency, so the next break shows early.
PYTHON ?= python3
PIP_VERSION := 26.3
TORCH ?= torch==2.13.0
PINNED := constraints/pinned.txt
FLOOR := constraints/floor.txt
# Test processes (pytest-xdist): the tests run tiny models on one thread each, so two workers on two cores take about
# half the time of one (the whole suite: 6-7 minutes on the 2-core development machine). WORKERS=0 runs it in this
# process.
WORKERS ?= 2
PYTEST := python -m pytest -q -n $(WORKERS)
# The dependencies test-latest upgrades to their newest releases. torch stays at the CPU wheel above: an unpinned torch
# pulls a multi-GB CUDA build.
ECOSYSTEM := transformers tokenizers datasets accelerate evaluate huggingface_hub safetensors
# What the floor environment runs: everything that touches transformers' model, generation, pipeline and Hub APIs.
FLOOR_TESTS := tests/test_versions.py tests/test_configuration.py tests/test_modeling.py tests/test_conformance.py \
	tests/test_generation.py tests/test_pipeline.py tests/test_tokenization.py tests/test_remote_code.py \
	tests/test_hub.py tests/test_hub_push_command.py tests/test_cli.py tests/test_readme.py tests/test_export.py \
	tests/test_lora.py tests/test_explain.py tests/test_dynamic_evaluation.py tests/test_shifted_blocks.py
# Less what does not depend on the transformers release, which the pinned run covers: the million-character prompt
# (it measures the model's chunked prefill, one forward call on either release), and the ONNX benchmark's and the
# README's ONNX loop's processes (torch.onnx and onnxruntime; the export itself is tested on both).
FLOOR_SKIP := --deselect tests/test_pipeline.py::test_a_million_character_prompt_runs_in_bounded_memory \
	--deselect tests/test_export.py::test_the_onnx_benchmark_prints_its_figures \
	--deselect tests/test_export.py::test_the_command_exports_and_the_readme_loop_samples_from_it

# $(1): the environment's folder, $(2): a constraints file (empty for the newest releases)
define make_venv
	rm -rf $(1)
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install --quiet --upgrade "pip==$(PIP_VERSION)"
	$(1)/bin/pip install --quiet $(if $(2),-c $(2)) "$(TORCH)" -e ".[dev]"
endef

.venv/bin/hf-charrnn: pyproject.toml $(PINNED)
	$(call make_venv,.venv,$(PINNED))
	touch $@

.venv-floor/bin/hf-charrnn: pyproject.toml $(FLOOR)
	$(call make_venv,.venv-floor,$(FLOOR))
	touch $@

.PHONY: install browser demo test test-fast test-floor test-cross-version test-latest lock
install: .venv/bin/hf-charrnn

# The page tests (tests/test_explain_browser.py) run in Debian's Chromium, driven by Playwright; without it they skip.
browser:  ## install Debian's chromium for the page tests (apt-get; needs root or sudo)
	command -v chromium >/dev/null || { $$(test "$$(id -u)" = 0 || echo sudo) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$(test "$$(id -u)" = 0 || echo sudo) apt-get install -y -qq chromium; }
	chromium --version 2>/dev/null

demo: install  ## train the default Shakespeare model on the CPU, then generate
	.venv/bin/hf-charrnn demo

test: install  ## the whole suite on the pinned set, slow end-to-end tests included
	.venv/bin/$(PYTEST) --durations=25

test-fast: install
	.venv/bin/$(PYTEST) -m "not slow"

test-floor: .venv-floor/bin/hf-charrnn  ## the transformers-facing tests on the oldest supported release
	.venv-floor/bin/$(PYTEST) $(FLOOR_TESTS) $(FLOOR_SKIP)

test-cross-version: install .venv-floor/bin/hf-charrnn  ## push under one end of the range, pull under the other
	HF_CHARRNN_OTHER_PYTHON=$(CURDIR)/.venv-floor/bin/python .venv/bin/$(PYTEST) tests/test_cross_version.py

test-latest:  ## the whole suite on the newest release of every dependency (not pinned)
	$(call make_venv,.venv-latest,)
	.venv-latest/bin/pip install --quiet --upgrade $(ECOSYSTEM)
	.venv-latest/bin/hf-charrnn env
	.venv-latest/bin/$(PYTEST)

lock:  ## after test-latest passes: make its versions the pinned set (then widen pyproject's transformers range)
	test -x .venv-latest/bin/python || { echo "run make test-latest first" >&2; exit 2; }
	{ sed -n '1,2p' $(PINNED); .venv-latest/bin/pip freeze --exclude-editable | sed 's/+cpu$$//'; } > $(PINNED).new
	mv $(PINNED).new $(PINNED)
	{ sed -n '1,2p' $(FLOOR); sed -n '3,$$p' $(PINNED) | sed "s/^transformers==.*/$$(grep '^transformers==' $(FLOOR))/"; } \
		> $(FLOOR).new
	mv $(FLOOR).new $(FLOOR)
	@grep '"transformers' pyproject.toml
	@echo "Pinned: $$(grep '^transformers==' $(PINNED)). If that is outside pyproject's range above, widen it."
