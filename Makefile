# Two commands set up and run everything on a fresh machine:
#   make quickstart   train LRFormer-T on the bundled CamVid, then test it (prints test mIoU)
#   make test         run the test suite (the default, under 5 minutes; what CI runs)
#   make test-all     also the tests marked slow (installs Debian's chromium for the browser test)
#   make docs         build the documentation site into build/site/ (mkdocs build --strict)
#   make docs-serve   serve it at http://127.0.0.1:8000, rebuilt on every change
#   make demo         the live demo (Gradio) of $(WEIGHTS) at http://127.0.0.1:7860
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
RUN_DIR ?= runs/quickstart
WEIGHTS ?= $(RUN_DIR)/checkpoints/best.ckpt

.PHONY: quickstart test test-all lint install docs docs-serve demo chromium

# The lean environment `make quickstart` needs: torch, the project and its dev extra.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# What the tests also cover: the site (docs extra), the live demo (demo extra) and OpenVINO/NNCF (deploy extra).
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[dev,docs,demo,deploy]"
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $@

$(VENV)/.installed-demo: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[demo]"
	touch $@

install: $(VENV)/.installed

# fit and test log to one W&B group, as runs <group>-fit and <group>-test (job types fit, test).
# Not one resumed run id: offline runs sharing an id overwrite each other on `wandb sync`.
quickstart: $(VENV)/.installed
	export WANDB_MODE=$${WANDB_MODE:-offline} \
		WANDB_RUN_GROUP=$${WANDB_RUN_GROUP:-quickstart-$$(date +%Y%m%d-%H%M%S)}; \
	WANDB_RUN_ID=$$WANDB_RUN_GROUP-fit WANDB_JOB_TYPE=fit \
		$(BIN)/lrsa-seg fit --config configs/quickstart.yaml && \
	WANDB_RUN_ID=$$WANDB_RUN_GROUP-test WANDB_JOB_TYPE=test \
		$(BIN)/lrsa-seg test --config configs/quickstart.yaml --ckpt_path $(RUN_DIR)/checkpoints/best.ckpt

# One pytest worker per core, at most 8 (pytest-xdist); each test runs one intra-op thread (tests/conftest.py).
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$((n < 8 ? n : 8)))
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

# Debian's chromium and its driver for the browser test (tests/cli/test_demo.py); needs root or sudo.
chromium:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	else SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; fi

test-all: $(VENV)/.installed-test chromium
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "slow or not slow"

lint: $(VENV)/.installed
	$(BIN)/ruff check .

docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

demo: $(VENV)/.installed-demo
	$(BIN)/lrsa-seg demo --weights $(WEIGHTS)
