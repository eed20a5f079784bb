# Two commands for a fresh clone: `make train` and `make test`.
# Both create .venv when it is missing and install the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: train test test-fast lint install bench docs docs-serve

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

train: $(STAMP)
	$(PY) -m train $(ARGS)

# Framework against a plain PyTorch loop, same job; e.g. ARGS="--modes cnn --repeats 1".
bench: $(STAMP)
	$(PY) benchmarks/training.py $(ARGS)

# One test process per core (pytest-xdist); ARGS="-n 0" runs them in this process.
test: $(STAMP)
	$(PY) -m pytest -n auto $(ARGS)

# The quick loop: skips tests marked slow (pyproject.toml): those that start commands as
# subprocesses, DDP runs, sweeps, the browser, exports and training runs of more than a
# second or two. `make test` still runs everything.
test-fast: $(STAMP)
	$(PY) -m pytest -n auto -m "not slow" $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

# The documentation site (mkdocs.yml, docs/): built strictly, so a broken link or a docstring
# the API reference cannot render fails; docs-serve previews it at http://127.0.0.1:8000/.
docs: $(STAMP)
	$(PY) -m mkdocs build --strict --site-dir site

docs-serve: $(STAMP)
	$(PY) -m mkdocs serve
