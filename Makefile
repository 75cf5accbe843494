# Two commands on a fresh machine: `make book` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Colab's versions (make colab-parity), and a Jupyter frontend for ipywidgets 7 (live-widgets)
COLAB_VENV ?= .venv-colab
WIDGETS7_FRONTEND ?= .venv-widgets7

# The rendered book and the tests run the chapters in CPU mode without progress bars, with one
# torch thread: the CPU-mode models are small, and two OpenMP threads on a busy 2-core machine
# spin against each other (measured 20x slower training than one thread).
BOOK_ENV := OLDSCHOOL_MODE=cpu OLDSCHOOL_PROGRESS=0 OMP_NUM_THREADS=1

.PHONY: install vendor browser book test unit browser-unit lint gpu-dry gpu-check gpu-budget clean \
	colab-parity live-widgets tested-with

install: $(STAMP)

$(STAMP): requirements.txt requirements-peers.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-peers.txt
	touch $@

# The ipywidgets manager that draws saved widget state in the static pages, served from the book
# itself so it reads offline: taken once from the npm registry (pinned) into a git-ignored folder.
HTML_MANAGER := 1.0.15
WIDGETS_DIR := book/_static/vendor/jupyter-widgets
vendor: $(WIDGETS_DIR)/.html-manager-$(HTML_MANAGER)

$(WIDGETS_DIR)/.html-manager-$(HTML_MANAGER):
	@command -v npm >/dev/null || { echo "make vendor: npm is needed once, to fetch @jupyter-widgets/html-manager" >&2; exit 1; }
	rm -rf $(WIDGETS_DIR) && mkdir -p $(WIDGETS_DIR)
	cd $(WIDGETS_DIR) && npm pack --silent @jupyter-widgets/html-manager@$(HTML_MANAGER) >/dev/null \
	  && tar xzf jupyter-widgets-html-manager-$(HTML_MANAGER).tgz --strip-components=2 --wildcards \
	     --exclude='*.map' --exclude='*amd*' 'package/dist/*' \
	  && rm jupyter-widgets-html-manager-$(HTML_MANAGER).tgz
	test -s $(WIDGETS_DIR)/embed.js && touch $@

# Debian's Chromium, which tests/test_browser.py drives (no browser download), and a CJK font so
# the screenshots show the glossary's Chinese terms: apt-get runs only when one is missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BROWSER_PACKAGES := chromium fonts-wqy-microhei
browser:
	dpkg -s $(BROWSER_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) apt-get install -y $(BROWSER_PACKAGES); }

# The "tested with" table (README, preface): the versions of the environment the book is built
# with, recorded by the build itself (scripts/tested_with.py) beside the Colab-parity run's.
tested-with: $(STAMP)
	$(BIN)/python scripts/tested_with.py record cpu-build $(BIN)/python "CPU mode, every chapter executed"

# Execute every chapter and render _build/html; any Sphinx warning or cell error fails it.
book: $(STAMP) vendor tested-with
	$(BOOK_ENV) $(BIN)/jupyter-book build . -W -n --keep-going

# The whole suite: unit tests, then the book built (every chapter executed) and its checks,
# and the live-notebook widget test (for ipywidgets 7.7.1 it needs `make colab-parity` first;
# without .venv-colab that half is skipped, saying so).
test: $(STAMP) vendor browser tested-with $(WIDGETS7_FRONTEND)/.installed
	OLDSCHOOL_COLAB_VENV=$(COLAB_VENV) OLDSCHOOL_WIDGETS7_FRONTEND=$(WIDGETS7_FRONTEND) \
	  $(BOOK_ENV) $(BIN)/python -m pytest -ra

# Unit tests only (a minute), for quick iterations; the Chromium ones (the live explorer's
# JavaScript against oldschool) run in `make test` and `make browser-unit`.
unit: $(STAMP)
	$(BOOK_ENV) $(BIN)/python -m pytest -ra -m "not book and not browser and not live"

browser-unit: $(STAMP) browser
	$(BOOK_ENV) $(BIN)/python -m pytest -ra -m "browser and not book"

# GPU mode proven without a GPU: every chapter's gpu column, its long loops capped
# (OLDSCHOOL_CAP=1, config.CAP_RULES), on the CPU; fails on any error; _build/gpu-check/report.md.
gpu-dry: $(STAMP)
	OLDSCHOOL_DEVICE=cpu OMP_NUM_THREADS=1 $(BIN)/python benchmarks/gpu_check.py --capped --no-benchmarks

# On a CUDA machine: every chapter's full gpu column, timed, with peak GPU memory, and the
# fp32/bf16 throughput benchmarks, in one report. Without CUDA it runs the capped CPU form.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py

# The README's table of each chapter's GPU memory and T4 time, computed from shapes.
gpu-budget: $(STAMP)
	$(BIN)/python benchmarks/gpu_budget.py

# The formatter and pyflakes over the package, tests, benchmarks and the chapters' code cells
# (line length 88: what a rendered code cell shows without a scroll bar). tests/test_lint.py runs it too.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .


# Colab parity (scripts/colab_parity.py): a fresh venv with Colab's published versions
# (colab/constraints.txt), the chapters' install cell run in it against a clone of this
# repository, then every chapter executed there; fails on an error or a changed package.
colab-parity: $(STAMP)
	$(BIN)/python scripts/colab_parity.py --venv $(COLAB_VENV)

# Chapter 5's explorer in a live Jupyter page (tests/test_live_widgets.py), with ipywidgets 8
# (this .venv, JupyterLab) and 7.7.1 (the Colab-parity venv, classic Notebook from
# colab/widgets7-frontend.txt).
$(WIDGETS7_FRONTEND)/.installed: colab/widgets7-frontend.txt
	rm -rf $(WIDGETS7_FRONTEND) && $(PYTHON) -m venv $(WIDGETS7_FRONTEND)
	$(WIDGETS7_FRONTEND)/bin/python -m pip install --quiet -r colab/widgets7-frontend.txt
	touch $@

live-widgets: $(STAMP) browser $(WIDGETS7_FRONTEND)/.installed
	test -x $(COLAB_VENV)/bin/python || $(MAKE) colab-parity
	OLDSCHOOL_COLAB_VENV=$(COLAB_VENV) OLDSCHOOL_WIDGETS7_FRONTEND=$(WIDGETS7_FRONTEND) \
	  $(BOOK_ENV) $(BIN)/python -m pytest -ra tests/test_live_widgets.py

clean:
	rm -rf _build $(COLAB_VENV) $(WIDGETS7_FRONTEND)
