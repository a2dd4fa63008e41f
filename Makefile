# Two commands do all set-up: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test bench bench-smoke bench-full lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gateway demo

test: $(STAMP)
	$(BIN)/python -m pytest

# Every benchmark of issue 7, rewriting docs/benchmarks.md. Issue 7 asks for under 10 minutes
# on 2 cores: 6.9-7.6 on AMD EPYC machines, 8.6-10.1 on a slower Intel Xeon one (by its speed).
bench: $(STAMP)
	$(BIN)/python scripts/bench.py

# Tiny sizes, about 30 seconds, a report in the temporary folder (tests/test_bench_smoke.py).
bench-smoke: $(STAMP)
	$(BIN)/python scripts/bench.py --quick

# The three-agency fan-out at 100,000 subjects alone (15 to 60 minutes here, with the
# machine's speed); the report keeps its figures (docs/benchmarks.json) and every later
# `make bench` shows them.
bench-full: $(STAMP)
	$(BIN)/python scripts/bench.py --full --only fanout

lint: $(STAMP)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[lint]'
	$(BIN)/python -m ruff check gateway mock_agencies tests scripts
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) demo-output .pytest_cache
