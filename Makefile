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
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/snakemake --cores $(CORES)

lint: install
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint

test: lint
	$(BIN)/pytest -q

clean:
	rm -rf results .snakemake
