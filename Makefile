# `make test` is the one command that sets up and checks everything (README).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
SLOW_TIMEOUT ?= 900

.PHONY: install lint format typecheck test test-fast test-slow bench bench-quick clean

install:
	bash deploy/bootstrap.sh dev

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# mypy cannot follow setuptools' package-dir mapping, so give it the installed
# layout as a farm of symlinks (edgefleet/{server,agent,shared}).
typecheck: install
	mkdir -p .typecheck/edgefleet
	for p in server agent shared; do ln -sfn ../../$$p .typecheck/edgefleet/$$p; done
	$(VENV)/bin/mypy -p edgefleet.shared -p edgefleet.agent -p edgefleet.server
	$(VENV)/bin/mypy tests

# Fast stage first (unit, broker, databases); then the slow end-to-end stage,
# bounded in time, and skipped when it selects nothing (pytest's exit code 5),
# so the run's last words are the results of tests that ran.
test: lint typecheck
	$(PYTEST) -m "not slow" -q
	@$(PYTEST) -m slow --collect-only -q >/dev/null; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "slow stage: no slow tests yet"; \
	elif [ $$rc -ne 0 ]; then echo "slow stage: collection failed"; exit $$rc; \
	else timeout $(SLOW_TIMEOUT) $(PYTEST) -m slow -q; fi

test-fast: install
	$(PYTEST) -m "not slow" -q

# Every benchmark, each against limits measured in the same run and bounded in
# time; one failing does not stop the others, and the target fails at the end.
# Figures in bench-results/*.json, the table in bench-results/summary.md.
bench: install
	$(PY) -m tests.bench.suite

# The same with small parameters, into bench-results/quick/: does everything run?
bench-quick: install
	$(PY) -m tests.bench.suite --quick

clean:
	rm -rf .typecheck .mypy_cache .ruff_cache .pytest_cache test-output
