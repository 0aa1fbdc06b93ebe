# lakelog: every command a developer or CI needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ENV ?= dev
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

.PHONY: install tools dev test test-py312 unit lint format bench synth deploy cdk-cli clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# kcat (Debian's package) for the README's Kafka quick start and its test; installed with
# apt-get where the machine can (as root, or with sudo), else a note says how.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
tools:
	@command -v kcat >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	  { $(SUDO) apt-get install -y -qq kcat >/dev/null 2>&1 || \
	    { $(SUDO) apt-get update -qq >/dev/null 2>&1 && $(SUDO) apt-get install -y -qq kcat >/dev/null 2>&1; }; }; } || \
	  echo "kcat is not installed (apt-get install kcat): the Kafka quick start's test needs it"

# The local API over in-process moto; e.g. `make dev DEV_ARGS="--port 0 --default-acl deny"`.
DEV_ARGS ?=
dev: $(STAMP) tools
	$(BIN)/lakelog dev $(DEV_ARGS)

test: $(STAMP) lint tools
	$(BIN)/python -m pytest -n 2 tests

# Lambda runs Python 3.12: the unit and integration suites run on it too, in .venv312.
PYTHON312 ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12) $(shell command -v python3.12 2>/dev/null))
VENV312 := .venv312

test-py312: pyproject.toml
	@if [ -z "$(PYTHON312)" ]; then echo "python3.12 not found: the Lambda-runtime check did not run"; exit 0; fi; \
	test -x $(VENV312)/bin/python || $(PYTHON312) -m venv $(VENV312); \
	$(VENV312)/bin/python -m pip install --quiet --upgrade pip; \
	$(VENV312)/bin/python -m pip install --quiet -e '.[dev]'; \
	$(VENV312)/bin/python -m pytest -n 2 -q tests/unit tests/integration

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check lib functions cdk tests benchmarks
	$(BIN)/ruff format --check lib functions cdk tests benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format lib functions cdk tests benchmarks
	$(BIN)/ruff check --fix lib functions cdk tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# The AWS CDK CLI, pinned in package.json/package-lock.json, installed into ./node_modules.
CDK := node_modules/.bin/cdk
CDK_QUIET := CDK_DISABLE_CLI_TELEMETRY=true JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20,22

$(CDK): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(CDK)

cdk-cli: $(CDK)

synth: $(STAMP) $(CDK)
	AWS_EC2_METADATA_DISABLED=true $(CDK_QUIET) $(CDK) synth -c env=$(ENV) --quiet --no-notices

deploy: $(STAMP) $(CDK)
	$(CDK_QUIET) $(CDK) deploy -c env=$(ENV) --no-notices --require-approval broadening

clean:
	rm -rf $(VENV) $(VENV312) .pytest_cache .mypy_cache .ruff_cache
