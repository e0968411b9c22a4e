# Two commands do everything on a fresh machine:
#   make demo   export the default (base) model to a bundle and run a quick benchmark on it
#   make test   install what the tests need (Python packages, ONNX Runtime C++ headers) and run them
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
CPP_BUILD := runtime/cpp/build

.PHONY: demo test setup pytest cpp-test clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[torch,export,dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) export/to_onnx.py --out bundles/base --force
	$(PY) export/to_precision.py bundles/base
	$(PY) benchmarks/latency.py --bundle bundles/base --quick-sweep

cpp-test: setup
	bash runtime/cpp/scripts/fetch_deps.sh
	cmake -S runtime/cpp -B $(CPP_BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(CPP_BUILD) -j2
	ctest --test-dir $(CPP_BUILD) --output-on-failure

pytest: setup
	$(PY) -m pytest -q -ra

test: cpp-test pytest

clean:
	rm -rf $(CPP_BUILD) bundles runs
