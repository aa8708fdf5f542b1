# Two commands set up and run everything on a fresh machine:
#   make quickstart   train LRFormer-T on the bundled CamVid, then test it (prints test mIoU)
#   make test         run the test suite (the default, under 5 minutes; what CI runs)
#   make test-all     also the tests marked slow
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
RUN_DIR ?= runs/quickstart

.PHONY: quickstart test test-all lint install

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
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

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

test-all: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(VENV)/.installed
	$(BIN)/ruff check .
