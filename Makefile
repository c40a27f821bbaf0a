# Two commands do everything on a fresh machine:
#   make demo   create .venv, install, run the demo workflow end to end (results/demo/)
#   make test   create .venv, install, run ruff, snakemake --lint and the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 8

.PHONY: install demo test lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

# The tests also drive the SLURM executor plugin. The demo leaves it out: plugin 2.x runs `scontrol show
# config` whenever snakemake starts, which costs ~9 s on a machine with SLURM's tools but no controller.
$(BIN)/.installed-test: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/snakemake --cores $(CORES)

lint: $(BIN)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint

# the oneDNN line says whether this CPU's torch corrupts memory in bf16 + channels_last training (bdl/onednn.py)
test: lint
	$(BIN)/python benchmarks/onednn_check.py
	$(BIN)/pytest -q

clean:
	rm -rf results .snakemake
