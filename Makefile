# Everything a fresh clone needs: `make train` and `make test` set themselves up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv graphviz test train sample pictures bench graphs draw notebooks clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the package metadata changes; a second run starts in seconds.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install the package with its test dependencies

graphviz: ## install graphviz's `dot` program (for drawing) if it is missing
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing graphviz (the dot program) with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null; \
	  else \
	    echo "graphviz's 'dot' program is missing; drawing tests will be skipped. Install it with:"; \
	    echo "    sudo apt-get install -y graphviz      (Debian/Ubuntu)"; \
	    echo "    brew install graphviz                 (macOS)"; \
	  fi; }

test: venv graphviz ## run the test suite
	$(PY) -m pytest -q

# How train, sample and pictures run: TINYGRAD_ATTN_MAKE makes their hints read `make <target> ARGS="..."`,
# and numpy's BLAS gets one thread: the copy model's matrices are tiny, and a second OpenBLAS thread only
# spins against the first (measured on the 2-core VM at load 2.7: 500 training steps in 3.9 s with one
# thread, 37.7 s with two).
RUN := TINYGRAD_ATTN_MAKE=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 VECLIB_MAXIMUM_THREADS=1 $(PY) -m

train: venv ## train a small transformer to copy sequences (ARGS="--help" for options)
	@$(RUN) tinygrad_attn.train $(ARGS)

sample: venv ## ask the trained model to copy (ARGS="'3 1 4 1 5'")
	@$(RUN) tinygrad_attn.sample $(ARGS)

pictures: venv ## redraw a run's attention.svg and curves.svg (ARGS="--example '3 1 4'")
	@$(RUN) tinygrad_attn.pictures $(ARGS)

graphs: venv graphviz ## draw the diagrams into docs/graphs/ (SVG, slide-sized)
	$(PY) -m tinygrad_attn.viz.gallery docs/graphs

draw: venv graphviz ## draw one layer or figure for a slide (ARGS=--help lists them)
	$(PY) -m tinygrad_attn.draw $(ARGS)

notebooks: venv ## write docs/notebooks/ from the chapters, executed (make test checks them)
	$(PY) docs/make_notebooks.py

# Exactly this torch spelling: CI's pin (.ci/run); a CPU wheel of it may already be on the machine.
bench: venv ## a training step vs PyTorch (installs torch==2.13.0) on a grid at 1 and 2 threads, memory, decoding (ARGS="--quick" prints only)
	@$(PY) -c "import torch" 2>/dev/null || { echo "installing torch==2.13.0, what the benchmark races against"; \
	  $(PY) -m pip install -q torch==2.13.0; }
	$(PY) -m benchmarks.bench $(ARGS)

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache *.egg-info
