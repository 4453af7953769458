# One-command entry points. `make setup` is idempotent: it reinstalls only when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint bench bench-quick bench-ci locust-ui clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Three test processes on two cores: most tests wait on real services (measured: 4 min against 9.5 in one).
test: lint
	$(BIN)/pytest -n 3 --dist loadfile

bench: setup
	$(BIN)/ragload bench --profile default

bench-quick: setup
	$(BIN)/ragload bench --profile quick

# CI regression gate: this tree (B) against its base (A: $BENCH_BASE, else the parent of HEAD), interleaved
# rounds of micro-benchmarks and a few load cells, judged by significance (README, "Regression gate").
bench-ci: setup
	$(BIN)/ragload bench-ci

# The Locust web UI against a running `ragload up` (API :8000, baseline :8001). No --host: each user class
# targets its own service (RAGLOAD_API_URL / RAGLOAD_BASELINE_URL override them); pick users and shape in the UI.
locust-ui: setup
	$(BIN)/locust -f loadtests/locust/locustfile.py --class-picker --web-host 127.0.0.1 --web-port 8089

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
