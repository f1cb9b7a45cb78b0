# Everything a fresh clone needs: `make train` and `make test` set themselves up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv graphviz test train bench graphs draw notebooks clean

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

graphviz: ## install the system graphviz package (the `dot` program) if it is missing
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

train: venv ## train a small transformer on the copy task (about 15 s idle on 2 cores; ARGS="--help" for options)
	$(PY) -m tinygrad_attn.train $(ARGS)

graphs: venv graphviz ## draw the diagrams into docs/graphs/ (SVG, from small attention layers, slide-sized)
	$(PY) -m tinygrad_attn.viz.gallery docs/graphs

draw: venv graphviz ## draw one layer or figure for a slide (ARGS="grouped_query_attention --heads 8 --kv-heads 2 -o gqa.png"; ARGS=--help lists them)
	$(PY) -m tinygrad_attn.draw $(ARGS)

notebooks: venv ## write docs/notebooks/ from the chapters in docs/, executed (make test checks they are current)
	$(PY) docs/make_notebooks.py

bench: venv ## a training step vs PyTorch on a grid of sizes at 1 and 2 threads, memory, decoding; writes docs/performance.md (ARGS="--quick" prints only)
	$(PY) -m benchmarks.bench $(ARGS)

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache *.egg-info
