# Two commands do everything on a fresh machine:
#   make demo   export the default (base) model to a bundle and run a quick benchmark on it
#   make test   install what the tests need (Python packages, ONNX Runtime C++ headers) and run them
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
CPP_BUILD := runtime/cpp/build
# A separate environment for the Triton server test: nvidia-pytriton ships a real tritonserver binary,
# and its Python-backend stub needs numpy < 2 (docs/triton.md).
TRITON_VENV := .venv-triton

.PHONY: demo test setup sysdeps triton-env pytest cpp-test clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[torch,export,openvino,dev]'
	$(PIP) install -q --no-deps --target build/trt-stubs -c constraints.txt tensorrt-stubs  # for mypy only (tests/trt_stubs.py)
	touch $@

setup: $(VENV)/.installed

$(TRITON_VENV)/.installed:
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q nvidia-pytriton==0.7.0 tokenizers==0.23.3 pillow==13.0.0 \
		onnxruntime==1.32.0 numpy==1.26.4 protobuf==6.33.6
	touch $@

triton-env: $(TRITON_VENV)/.installed

demo: setup
	$(PY) export/to_onnx.py --out bundles/base --force
	$(PY) export/to_precision.py bundles/base --calibration-samples 32 --guard-samples 32 --guard-budget 0
	$(PY) benchmarks/latency.py --bundle bundles/base --quick-sweep

# Debian packages: JPEG/PNG decoders for the C++ runtime; qemu-user to run the INT8 test of another CPU class
# (an emulated AVX2-only CPU) on this one.
sysdeps:
	dpkg -s libjpeg-dev libpng-dev qemu-user >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libjpeg-dev libpng-dev qemu-user; }

cpp-test: setup sysdeps
	bash runtime/cpp/scripts/fetch_deps.sh
	cmake -S runtime/cpp -B $(CPP_BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(CPP_BUILD) -j2
	ctest --test-dir $(CPP_BUILD) --output-on-failure

pytest: setup sysdeps triton-env
	DFMA_TRITON_VENV=$(CURDIR)/$(TRITON_VENV) $(PY) -m pytest -q -ra

test: cpp-test pytest

clean:
	rm -rf $(CPP_BUILD) bundles runs $(TRITON_VENV)
