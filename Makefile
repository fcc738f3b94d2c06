# aisuper's entry points. Needs only Python 3.11+ and make: uv is installed
# into .tools/ on first use when it is not on PATH.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.8
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
PYTEST_ARGS ?=

.PHONY: help env up down status test kafka proto proto-deps proto-check lint bench clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	@echo "==> installing uv $(UV_VERSION) into .tools/ (uv is not on PATH)"
	@python3 -m venv .tools && .tools/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

env: $(UV) ## create .venv from uv.lock
	@echo "==> syncing the environment from uv.lock"
	@$(UV) sync --frozen

up: env ## run the platform on its embedded default (broker, identity, catalog, policy)
	@$(UV) run --frozen aisuper up

down: env ## stop a platform started with `aisuper up --detach`
	@$(UV) run --frozen aisuper down

status: env ## what runs, and how healthy it is
	@$(UV) run --frozen aisuper status

test: env ## run the whole test suite (embedded engines unless AISUPER_TEST_* point elsewhere)
	@echo "==> running the test suite"
	@$(UV) run --frozen pytest $(PYTEST_ARGS)

kafka: ## fetch Apache Kafka's jars from Maven Central (the embedded broker then runs real Kafka)
	@infra/kafka/fetch.sh

proto-deps:
	@proto/fetch-deps.sh

proto: env proto-deps ## regenerate libs/protos from proto/
	@echo "==> generating Python code from proto/"
	@rm -rf libs/protos/src/aisuper libs/protos/src/buf
	@cd proto && PATH="$(CURDIR)/.venv/bin:$$PATH" buf generate
	@$(UV) sync --frozen --reinstall-package aisuper-protos --quiet

proto-check: env proto-deps ## buf lint, buf breaking against main's previous commit, generated-code drift
	@tools/proto-check.sh

lint: env ## ruff and mypy
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen mypy libs/platform/src services/identity/src services/catalog/src services/policy/src cli/src

bench: env ## run the benchmarks in tests/bench (see docs/benchmarks.md)
	@$(UV) run --frozen python tests/bench/run.py

clean: ## remove environments and build output (keeps .aisuper data)
	rm -rf .venv .tools .build proto/third_party
