# Developer commands. `make serve` and `make test` are the README's two-command quick start.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: serve test test-pure test-compiled install proto lint clean bench fuzz

$(STAMP): pyproject.toml setup.py $(wildcard obscura/_speedups/*.py obscura/_speedups/*.pxd)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/obscura serve

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)
	OBSCURA_NO_EXTENSIONS=1 $(PY) -m pytest -q $(PYTEST_ARGS)

test-compiled: $(STAMP)
	OBSCURA_REQUIRE_EXTENSIONS=1 $(PY) -m pytest -q $(PYTEST_ARGS)

test-pure: $(STAMP)
	OBSCURA_NO_EXTENSIONS=1 $(PY) -m pytest -q $(PYTEST_ARGS)

proto: $(STAMP)
	$(PY) -m obscura._proto.regenerate

clean:
	rm -rf build obscura/_speedups/*.so obscura/_speedups/*.c
