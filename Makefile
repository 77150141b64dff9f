# Every target runs under plain /bin/sh (Debian's dash included): no bash-isms.
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# uv: the one on PATH, else a private copy in .tools/ (pinned, with hashes, in
# scripts/uv-requirements.txt). Never pip into $(PYTHON) itself: an externally managed Python
# (PEP 668: Debian, Ubuntu, Fedora, Homebrew) refuses it, and the system's packages are not ours.
TOOLS := .tools
UV_ON_PATH := $(shell command -v uv 2>/dev/null)
UV := $(or $(UV_ON_PATH),$(TOOLS)/bin/uv)
export UV_PYTHON ?= $(PYTHON)
export UV_PYTHON_DOWNLOADS ?= never
# This machine sets PYTHONDONTWRITEBYTECODE; without compiled bytecode every start is seconds slower.
export UV_COMPILE_BYTECODE := 1
DEV_API_KEY := dev-public-key
DEV_OPERATOR_KEY := dev-operator-key
BACKEND_PORT ?= 8000
PYTEST_ARGS ?=
# Test processes (pytest-xdist), each with its own Redis, container and PostgreSQL database;
# 0 runs the tests in one process. One more than the cores: much of a test's time is spent
# waiting for a server or a worker, not computing. TESTING.md has the measurements.
CORES := $(shell getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
PYTEST_WORKERS ?= $(shell expr $(CORES) + 1)
PARALLEL := -n $(PYTEST_WORKERS)
# Each test process (and each backend the frontend tests start) would otherwise compile our code
# and pytest would rewrite every test module and plugin package again: seconds per process.
test test-unit test-integration test-fuzz test-e2e: export PYTHONDONTWRITEBYTECODE :=
FRONTEND_PORT ?= 8501

.PHONY: help install run run-backend run-frontend worker bench-jobs test test-unit test-integration test-fuzz lint format \
	typecheck migrate clean install-e2e test-e2e test-plan-check bench bench-faults test-mutation docker-up docker-dev docker-down check-compose check-ci hooks container-engine \
	container-engine-stop

help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}'

install: $(if $(UV_ON_PATH),,$(TOOLS)/bin/uv) ## Install everything from the lock into .venv
	$(UV) sync --frozen

# pip reads no SSL_CERT_FILE (uv does): behind a TLS proxy it gets the same CA bundle explicitly.
$(TOOLS)/bin/uv: scripts/uv-requirements.txt
	$(PYTHON) -m venv --clear $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
		$(if $(SSL_CERT_FILE),--cert "$(SSL_CERT_FILE)") -r scripts/uv-requirements.txt

# The development servers, both on loopback only: the frontend holds the operator key.
# `app.cli serve` checks the settings before uvicorn's reloader starts (one line if one is bad).
# --log-config: uvicorn's own lines (reloader, workers) rendered like ours, JSON with LOG_FORMAT=json.
BACKEND_SERVER = $(BIN)/python -m app.cli serve --reload --reload-dir backend --reload-dir shared \
	--log-config backend/app/log_config.json --host 127.0.0.1 --port $(BACKEND_PORT)
FRONTEND_SERVER = $(BIN)/streamlit run frontend/streamlit_app/main.py --server.headless true \
	--server.address 127.0.0.1 --server.port $(FRONTEND_PORT) --browser.gatherUsageStats false
# The frontend's defaults: the backend of `make run`, with its development keys.
run run-frontend: export BACKEND_URL ?= http://127.0.0.1:$(BACKEND_PORT)
run run-frontend: export BACKEND_API_KEY ?= $(DEV_API_KEY)
run run-frontend: export BACKEND_OPERATOR_KEY ?= $(DEV_OPERATOR_KEY)

run: ## Serve the backend on :8000 and the frontend on :8501 (Ctrl-C or SIGTERM stops both)
	@$(BIN)/python -m app.cli check
	@exec $(BIN)/python scripts/run_together.py "$(BACKEND_SERVER)" "$(FRONTEND_SERVER)"

run-backend: ## Serve the backend alone, reloading on change
	@$(BACKEND_SERVER)

worker: ## A job worker: items from REDIS_URL, JOB_CONCURRENCY at once (start several)
	@exec $(BIN)/python -m app.cli worker

bench-jobs: ## Job throughput, 250 ms provider, JOB_CONCURRENCY=4, one and two worker processes
	$(BIN)/python -m bench.jobs

run-frontend: ## Serve the Streamlit frontend alone
	$(FRONTEND_SERVER)

test: ## Run every test but the browser one, in parallel; prints the 15 slowest
	$(BIN)/pytest -m "not e2e" $(PARALLEL) --durations=15 $(PYTEST_ARGS)

test-unit: ## Run the unit tests
	$(BIN)/pytest backend/tests/unit $(PARALLEL) $(PYTEST_ARGS)

test-integration: ## Run the integration tests over every available backend, in parallel
	$(BIN)/pytest backend/tests/integration $(PARALLEL) $(PYTEST_ARGS)

test-fuzz: ## Fuzz both API documents with the thorough Hypothesis profile (CI runs it)
	$(BIN)/pytest backend/tests/integration -m fuzz --hypothesis-profile=thorough $(PARALLEL) \
		$(PYTEST_ARGS)

install-e2e: ## Install Debian's chromium for the browser test (root; idempotent)
	scripts/install-e2e.sh

test-e2e: ## Drive the app in headless Chromium; screenshot in artifacts/e2e/process.png
	$(BIN)/pytest frontend/tests/e2e -m e2e $(PYTEST_ARGS)

test-plan-check: ## Check TEST_PLAN.md and the tests name each other; integration docstrings complete
	$(BIN)/python scripts/test_plan_check.py

test-mutation: ## Mutation-test cache, breaker, auth and rate limit with mutmut (~7 min); fails under 80%
	rm -rf backend/mutants
	cd backend && TEST_REDIS_URL= TEST_DATABASE_URL= DOCKER_HOST= REQUIRE_REAL_SERVICES= \
		../$(BIN)/mutmut run
	$(BIN)/python scripts/mutation_score.py --project backend --min 80

bench: ## Load benchmarks on loopback with wrk: figures and targets, reports/bench/
	$(BIN)/python -m bench.run

bench-faults: ## Redis frozen and PostgreSQL killed under load (wrk, 2 workers): figures, promises
	$(BIN)/python -m bench.faults

lint: ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: ## Fix lint and format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: ## mypy: strict for the code, relaxed for tests (fixtures need no return types)
	$(BIN)/mypy backend/app shared/shared frontend/streamlit_app bench scripts
	$(BIN)/mypy --allow-untyped-defs --allow-incomplete-defs backend/tests
	$(BIN)/mypy --allow-untyped-defs --allow-incomplete-defs frontend/tests

migrate: ## Apply the database migrations to DATABASE_URL
	$(BIN)/python -m app.cli migrate

clean: ## Remove caches, reports and the local SQLite database
	rm -rf .pytest_cache .mypy_cache .ruff_cache reports artifacts mutants backend/mutants data
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

docker-up: ## Build and start the stack (PostgreSQL, Redis, migrate, backend, frontend) in the background
	docker compose up --build -d

docker-dev: ## The stack with mounted code: backend reloads, Streamlit reruns on save
	docker compose -f docker-compose.yml -f docker-compose.dev.yml up --build

docker-down: ## Stop the Compose stack (volumes are kept)
	docker compose down

# Compose projects to check, as COMPOSE_FILE lists (a:b); empty means the repository's own.
COMPOSE_PROJECTS ?=
check-compose: ## Compose's own validation and hadolint, offline; COPY sources vs .dockerignore
	$(BIN)/python scripts/check_compose.py $(COMPOSE_PROJECTS)

check-ci: ## actionlint (with shellcheck) on the GitHub Actions workflows, offline
	$(BIN)/actionlint -shellcheck=$(BIN)/shellcheck

hooks: ## Install the pre-commit hooks (local: ruff, mypy, plan check) into this clone's git
	$(BIN)/pre-commit install

container-engine: ## Provision podman as a Docker API for testcontainers (Debian, no Docker)
	scripts/container-engine.sh start

container-engine-stop: ## Stop the podman API service started by container-engine
	scripts/container-engine.sh stop
