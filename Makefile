# Developer commands. `make serve` and `make test` are the README's two-command quick start.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Test processes (pytest-xdist; each has its own embedded PostgreSQL and redis-server). A whole
# file stays on one process. PYTEST_WORKERS=0 runs in this process (for -s, pdb, a single test).
PYTEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: serve test test-pure test-compiled install proto lint clean bench fuzz bench-gate fuzz-ci

$(STAMP): pyproject.toml setup.py $(wildcard obscura/_speedups/*.py obscura/_speedups/*.pxd)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/obscura serve

test: $(STAMP)
	$(PYTEST) $(PYTEST_ARGS)
	OBSCURA_NO_EXTENSIONS=1 $(PYTEST) $(PYTEST_ARGS)

test-compiled: $(STAMP)
	OBSCURA_REQUIRE_EXTENSIONS=1 $(PYTEST) $(PYTEST_ARGS)

test-pure: $(STAMP)
	OBSCURA_NO_EXTENSIONS=1 $(PYTEST) $(PYTEST_ARGS)

proto: $(STAMP)
	$(PY) -m obscura._proto.regenerate

# Fuzzing (fuzz/README.md): each atheris target for FUZZ_SECONDS; new inputs land in FUZZ_WORK,
# crashes as FUZZ_WORK/<target>-crash-*. fuzz-ci is the short bounded run CI does (~80 s total,
# without coverage instrumentation, which alone costs ~25 s per target to set up).
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= frames http keys headers json resp
FUZZ_WORK ?= /tmp/obscura-fuzz

fuzz: $(STAMP)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_WORK)/$$t && echo "== fuzz $$t for $(FUZZ_SECONDS)s" && \
	  $(PY) fuzz/$${t}_target.py $(FUZZ_WORK)/$$t fuzz/corpus/$$t -max_total_time=$(FUZZ_SECONDS) \
	    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$(FUZZ_WORK)/$$t- || exit 1; \
	done

fuzz-ci:
	OBSCURA_FUZZ_UNINSTRUMENTED=1 $(MAKE) fuzz FUZZ_SECONDS=12

clean:
	rm -rf build obscura/_speedups/*.so obscura/_speedups/*.c

# Performance-regression gate (bench/gate.py, performance.md goal 6): goal 1 and 2 ratios against
# bench/baseline.json plus a short k6 WebSocket check; about 2-3 minutes.
bench-gate: $(STAMP)
	$(PY) -m bench.gate $(GATE_ARGS)
