# The two set-up commands of the README. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The `lens` extra (TransformerLens, for toy_models.lens) needs torch: a CPU build goes in first, from PyTorch's
# CPU index or, where that is out of reach, a local wheel (pip's find-links), so that pip never resolves a CUDA
# build from PyPI. On a GPU machine: make TORCH=torch.
TORCH ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

# Reinstall when the package metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --retries 0 --extra-index-url $(TORCH_INDEX) '$(TORCH)'
	$(BIN)/python -m pip install --quiet -e '.[test,notebooks,lens]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/zipfhead sweep --out runs/demo

# Test files run in parallel, one file per worker (module fixtures train once); TEST_WORKERS=0 runs them in-process.
# Files are handed out in collection order (--no-loadscope-reorder), which tests/conftest.py sets longest first:
# xdist's default order (most tests first) left the long toy-training files for last, one worker running alone.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/zipfhead bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
