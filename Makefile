# Two commands set everything up on a fresh machine:
#   make demo   - make .venv (torch pinned), install simcne, train on digits, write a map
#   make test   - make .venv (torch pinned), install simcne with test extras (and Debian's
#                 chromium for the browser tests, when missing and apt-get works), run the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Pinned: an open range would pull a CUDA build of several GB.
TORCH ?= torch==2.13.0

.PHONY: demo test venv clean browser

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test,plot,html]"
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/simcne demo --out simcne-demo

test: $(VENV)/.installed browser
	$(PY) -m pytest -q

# tests/test_map.py opens map.html in Debian's headless chromium (and skips, saying so,
# without one). Installed here when missing and apt-get works (as root); never fails.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; }; } \
	  && echo "make: installed chromium for the browser tests"; } || \
	echo "make: no chromium and no way to install it: the browser tests will skip"

clean:
	rm -rf $(VENV) simcne-demo .pytest_cache
