# Two commands do all the set-up: `make demo` (the main job) and `make test` (the tests).
# Both create .venv when missing. TORCH picks the PyTorch build: the default is the CPU build
# pinned for small machines; a GPU user runs e.g. `make demo TORCH=torch`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.steadydiff-installed

.PHONY: demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev,fid]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/steadydiff train --data digits --out runs/demo
	$(VENV)/bin/steadydiff sample runs/demo --n 64 --steps 18 --sampler heun --seed 0 --out runs/demo/final-samples.png

# One thread per process unless OMP_NUM_THREADS says otherwise: torch's default threads spin-wait on a CPU that
# other work shares, which slowed the suite several-fold; the tests' models are small, so one thread costs little.
THREADS := OMP_NUM_THREADS=$(or $(OMP_NUM_THREADS),1)

test: $(STAMP)
	$(THREADS) $(PY) -m pytest -q

test-slow: $(STAMP)
	$(THREADS) $(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/grid25.py
	$(PY) benchmarks/digits_quality.py

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs build dist src/*.egg-info
