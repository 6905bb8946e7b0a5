# README's two commands: `make bench` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: bench test venv clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

bench: $(STAMP)
	$(PY) -m sprout_harness.bench_main

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) html/index.html .asv
