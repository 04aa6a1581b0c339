# The one entry point for people and CI. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK ?= local
SOURCE ?= synthetic
CLASSES ?= bicycle,motorcycle
DEMO_OUT ?= data/demo
DEMO_ARGS ?=
EXTRAS ?= localcloud,ml,serve,dev,aws
TARGET ?= local
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $@

venv: $(VENV)/.installed ## create .venv and install the project (every other target depends on it)

up: venv ## start the local cloud in the background (STACK=localstack: LocalStack, docker compose or host mode)
	$(BIN)/scones up --stack $(STACK)

check: venv ## start the local cloud and run its self-test
	$(BIN)/scones up --check

down: venv ## stop the local cloud and its Lambda workers (STACK=localstack: LocalStack)
	$(BIN)/scones down --stack $(STACK)

status: venv ## say what runs
	$(BIN)/scones status

stage: up ## stage SOURCE (synthetic|cifar100|path) CLASSES (bicycle,motorcycle|vehicles|…) to S3
	$(BIN)/scones stage --source $(SOURCE) --classes $(CLASSES) --explore

train: up ## train on the staged data like a SageMaker job, upload model.tar.gz, then evaluate it
	$(BIN)/scones train
	$(BIN)/scones evaluate

deploy: up ## deploy the workflow stack (Lambdas, state machines, SNS) and the endpoint to the local cloud
	$(BIN)/scones deploy --target local

serve-sagemaker: venv ## serve MODEL (default: the newest trained) as deploy --target aws packages it, run by the SageMaker PyTorch inference container's own code (TorchServe; needs Java) on PORT (default 8080)
	$(BIN)/scones endpoint serve --runtime sagemaker $(if $(MODEL),--model $(MODEL)) $(if $(PORT),--port $(PORT))

deploy-aws: venv ## the whole chain on real AWS: preflight, stage, GPU training job, endpoint (100% capture, autoscaling), stack, hourly monitoring (DRY_RUN=1: print the plan)
	$(BIN)/scones deploy --target aws $(if $(DRY_RUN),--dry-run) $(DEPLOY_ARGS)

invoke: venv ## run the workflow on 20 staged test images (Map fan-out) and print the result table
	$(BIN)/scones invoke --batch 20

demo: venv ## the main job end to end: stage, train, evaluate, deploy, invoke, graph, load, monitor, a promoted rollout and a rolled-back one, summary table
	$(BIN)/python -m scones.demo --out $(DEMO_OUT) --source $(SOURCE) --classes $(CLASSES) $(DEMO_ARGS)

test: venv ## run every test that needs neither Docker nor an AWS account
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-localstack: venv ## start LocalStack in host mode on a free port, run the tests marked localstack on it, stop it
	@state=$$(mktemp -d -t scones-localstack-XXXXXX); \
	export SCONES_STATE_DIR=$$state SCONES_LOCALSTACK_PORT=0 SCONES_LOCALSTACK_MODE=host SCONES_TARGET=localstack; \
	trap '$(BIN)/scones down --stack localstack; rm -rf "$$state"' EXIT; \
	$(BIN)/scones up --stack localstack && $(BIN)/python -m pytest -m localstack $(PYTEST_ARGS)

lint: venv ## ruff on the whole tree, the import-linter contracts (arrows point one way), cfn-lint on template.yaml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo
	$(BIN)/cfn-lint template.yaml

format: venv ## apply ruff's formatting and import order
	$(BIN)/ruff check --fix --select I .
	$(BIN)/ruff format .

bench: venv ## benchmarks (each starts its own local cloud, prints what it measured and rewrites its section of docs/benchmarks.md)
	$(BIN)/python bench/bench_localcloud.py
	$(BIN)/python bench/bench_staging.py
	$(BIN)/python bench/bench_training.py
	$(BIN)/python bench/bench_endpoint.py
	$(BIN)/python bench/bench_workflow.py
	$(BIN)/python bench/bench_monitor.py
	$(BIN)/python bench/bench_containers.py
	$(BIN)/python bench/bench_rollout.py
	$(BIN)/python bench/bench_real.py

bench-targets: venv ## the same operations on the embedded cloud and on LocalStack (host mode), with ratios (docs/benchmarks.md)
	$(BIN)/python bench/bench_targets.py

clean: ## remove everything the project created: endpoints, stack, S3 objects, local cloud, LocalStack, .venv, .scones, data (TARGET=aws: only what `make deploy-aws` made on AWS, tagged; asks first)
ifeq ($(TARGET),aws)
	$(BIN)/scones clean --target aws $(CLEAN_ARGS)
else
	@if [ -x $(BIN)/scones ]; then $(BIN)/scones clean --yes || true; $(BIN)/scones down || true; \
		$(BIN)/scones down --stack localstack || true; fi
	rm -rf $(VENV) .venv-localstack .scones data .pytest_cache .ruff_cache .pip-cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
endif

.PHONY: help venv up check down status stage train deploy deploy-aws invoke demo test test-localstack bench-targets lint format bench clean
