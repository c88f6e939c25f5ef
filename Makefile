# `make demo` and `make test` each create the virtual environment when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow mutation bench docs lint format clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pgrad.demo

test: $(STAMP)
	$(VENV)/bin/ruff check pgrad tests benchmarks
	$(VENV)/bin/ruff format --check pgrad tests benchmarks
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# Mutation score per package (docs/testing.md): a seeded sample of 300 mutmut mutants per package; not part of
# `make test` (it takes hours on 2 cores). Scratch copy in mutants/ (git-ignored).
mutation: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) tests/mutation.py --sample 300 --seed 0

bench: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[bench]"
	$(PY) benchmarks/score_function.py

# The documentation site (mkdocs.yml, docs/hooks.py) into site/; --strict: a broken link or anchor, a
# docstring mkdocstrings cannot read or a failing `pgrad ... --help` fails the build. Offline: nothing fetched.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(VENV)/bin/ruff check pgrad tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format pgrad tests benchmarks
	$(VENV)/bin/ruff check --fix pgrad tests benchmarks

clean:
	rm -rf $(VENV) runs site .pytest_cache
