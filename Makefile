# The commands a newcomer needs. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test lab bench train eval clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed  ## the main job: runs the most complete demo on this machine
	$(PY) -m minitml demo

test: $(VENV)/.installed  ## lint, unit tests, notebook sync and notebook execution (fast mode)
	$(VENV)/bin/ruff check .
	MINITML_FAST=1 $(PY) -m pytest -q --durations=15

train: $(VENV)/.installed  ## train the tiny preset with TrainConfig's recipe (1500 steps of 4-7 s on one CPU core)
	$(PY) -m minitml train --threads 1 --out out/train
	@echo "weights: out/train/model.pt (copy to data/tiny.pt to ship them)"

eval: $(VENV)/.installed  ## the closed-loop benchmark of the shipped checkpoint (50 scenarios per kind, heard too)
	$(PY) -m minitml eval --n 50 --transcribe --out out/eval

lab: $(VENV)/.installed  ## JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab notebooks/

bench: $(VENV)/.installed  ## every benchmark in bench/, one after another
	for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean-venv:
	rm -rf $(VENV)
