# The data flow, one target per stage:
#   zoo/catalogue.py (which models) -> zoo count (measure) -> data/*.csv -> site/ pages -> public/
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: zoo counts site serve test bench clean

# Set up .venv (once, and again when pyproject.toml changes), refresh data/, build the site.
zoo: counts site

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[site,test]'
	touch $(STAMP)

counts: $(STAMP)
	$(PY) -m zoo count default

site: $(STAMP)
	$(PY) -m zoo site

serve: site
	$(PY) -m http.server 8000 --bind 127.0.0.1 --directory public

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/count_speed.py

clean:
	rm -rf public build .pytest_cache
