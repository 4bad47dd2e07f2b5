# The two quick-start commands and their idempotent set-up.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint setup

demo: $(STAMP)
	$(BIN)/fieldguide train

test: $(STAMP)
	@bash scripts/starter-data.sh
	@bash scripts/diagram-tools.sh
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check fieldguide tests benchmarks
	$(BIN)/ruff format --check fieldguide tests benchmarks

setup: $(STAMP)

# Re-runs only when pyproject.toml changes; torch is installed once, the CPU build unless
# an NVIDIA GPU is present, so a CPU machine never downloads a multi-gigabyte CUDA build.
$(STAMP): pyproject.toml scripts/setup.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh
	touch $(STAMP)
