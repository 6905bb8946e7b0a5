# README's two commands: `make bench` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: bench test venv clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel

# Every distribution of the monorepo, editable: the harness (with its test tools), the store,
# and the two stacks registered under the `sprout_harness.stacks` entry point.
DISTS := stores/loam stacks/loam stacks/pgnotify

$(STAMP): $(PY) pyproject.toml $(addsuffix /pyproject.toml,$(DISTS))
	@# a venv made when all of it was one distribution (`sprout`) would keep a second copy
	$(PY) -m pip uninstall -q -y sprout 2>/dev/null || true
	$(PY) -m pip install -q -e '.[test]' $(addprefix -e ,$(DISTS))
	touch $(STAMP)

venv: $(STAMP)

# The main job: the harness on the embedded LevelDB default (console table + JSON, gab and
# HTML reports in reports/), then the asv suite for this commit (RANGE= for a commit range,
# QUICK=1 for one sample each) published into html/ with the targets table.
REPORTS := reports

bench: $(STAMP)
	mkdir -p $(REPORTS)
	$(VENV)/bin/sprout run configs/leveldb-local.yaml --json $(REPORTS)/leveldb-local.json \
		--gab $(REPORTS)/leveldb-local.gab.json --html $(REPORTS)/leveldb-local.html
	$(MAKE) --no-print-directory bench-asv

# Lint and types first (seconds), then every test.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .asv $(REPORTS)

# --- asv (see docs/asv.md): run + publish, PR gate, publish only, preview ---
RANGE ?=
QUICK ?=
BASE ?= main
FACTOR ?= 1.2
ALL ?=
_truthy = $(filter 1 y yes true on,$(1))

.PHONY: bench-asv continuous publish preview

bench-asv: $(STAMP)
	$(PY) -m sprout_harness.asvtools.bench $(if $(RANGE),--range '$(RANGE)') $(if $(call _truthy,$(QUICK)),--quick)

continuous: $(STAMP)
	$(PY) -m sprout_harness.asvtools.continuous '$(BASE)' HEAD --factor $(FACTOR) $(if $(call _truthy,$(QUICK)),--quick) $(if $(call _truthy,$(ALL)),--all)

publish: $(STAMP)
	$(PY) -m asv publish
	$(PY) -m sprout_harness.asvtools.offline --html html

preview: $(STAMP)
	@echo "serving html/ on http://127.0.0.1:8080/ (Ctrl+C stops)"
	$(PY) -m http.server -d html -b 127.0.0.1 8080
