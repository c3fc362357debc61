# Quick start: `make demo` writes the demo case (a simulated brain, Testing/phantoms/demo.py) to
# demo-case/ and runs the whole job on it (`motorband run`, output in demo-out/); `make test` runs the tests;
# `make web` serves the panel in a browser on 127.0.0.1.
# Each target creates .venv with python3 -m venv and installs the package on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench web clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python Testing/phantoms/demo.py --out demo-case
	$(BIN)/motorband run --magnitude demo-case/magnitude.nii.gz --phase demo-case/phase.nii.gz --out demo-out

test: $(STAMP)
	$(BIN)/python -m pytest -q Testing

# The panel in a browser on http://127.0.0.1:$(PORT)/ (`motorband web`; the demo case: run `make demo` first).
PORT ?= 8080
web: $(STAMP)
	$(BIN)/motorband web --port $(PORT)

bench: $(STAMP)
	$(BIN)/python Testing/benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo-case demo-out .pytest_cache
