# The data flow, one target per stage:
#   zoo/catalogue/entries.py (which models) -> zoo count, zoo predict, zoo time (measure)
#   -> data/*.csv
#   -> zoo site (charts and pages from data/ and site/) -> public/
PYTHON ?= python3
# the models counted and predicted: default, all (timm's whole catalogue), or names as for zoo list
ZOO    ?= default
# the models timed, one at a time on this machine's CPU
TIMED  ?= default
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: zoo counts memory latency site serve test browser latex bench clean

# Set up .venv (once, and again when pyproject.toml changes), refresh data/, build the site.
zoo: counts memory latency site

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[site,test,cluster]'
	touch $(STAMP)

counts: $(STAMP)
	$(PY) -m zoo count $(ZOO)

memory: $(STAMP)
	$(PY) -m zoo predict $(ZOO)

latency: $(STAMP)
	$(PY) -m zoo time $(TIMED)

site: $(STAMP)
	$(PY) -m zoo site

serve: site
	$(PY) -m http.server 8000 --bind 127.0.0.1 --directory public

test: $(STAMP) browser latex
	$(PY) -m pytest -q

# The browser the site's tests drive: Debian's chromium, installed as root from the package
# registry. Elsewhere one line says how; the other tests still run (the browser tests say it too).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
	  echo "make: no chromium for the browser tests: run 'sudo apt-get install chromium'" >&2

# pdflatex, which the tests compile every LaTeX export with: Debian's texlive (booktabs, array,
# longtable are in these two), installed as root like the browser. Elsewhere one line says how.
latex:
	@command -v pdflatex >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends texlive-latex-base texlive-latex-recommended; } || \
	  echo "make: no pdflatex for the LaTeX export tests: run 'sudo apt-get install texlive-latex-recommended'" >&2

bench: $(STAMP)
	$(PY) benchmarks/count_speed.py --zoo
	$(PY) benchmarks/memory_speed.py
	$(PY) benchmarks/sweep.py
	$(PY) benchmarks/latency_repeat.py

clean:
	rm -rf public build .pytest_cache
