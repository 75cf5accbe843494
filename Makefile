# Two commands on a fresh machine: `make book` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The rendered book and the tests run the chapters in CPU mode without progress bars.
BOOK_ENV := OLDSCHOOL_MODE=cpu OLDSCHOOL_PROGRESS=0 MPLBACKEND=Agg

.PHONY: install book test unit clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	touch $@

# Execute every chapter and render _build/html; any Sphinx warning or cell error fails it.
book: $(STAMP)
	$(BOOK_ENV) $(BIN)/jupyter-book build . -W -n --keep-going

# The whole suite: unit tests, then the book build (every chapter executed) and its checks.
test: $(STAMP)
	$(BOOK_ENV) $(BIN)/python -m pytest -ra

# Unit tests only (a minute), for quick iterations.
unit: $(STAMP)
	$(BOOK_ENV) $(BIN)/python -m pytest -ra -m "not book"

clean:
	rm -rf _build
