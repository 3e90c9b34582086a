# Two commands set everything up on a fresh machine:
#   make demo   - make .venv (torch pinned), install simcne, train on digits, write a map
#   make test   - make .venv (torch pinned), install simcne with test extras, run the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Pinned: an open range would pull a CUDA build of several GB.
TORCH ?= torch==2.13.0

.PHONY: demo test venv clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test,plot]"
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/simcne demo --out simcne-demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) simcne-demo .pytest_cache
