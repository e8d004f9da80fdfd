# cl_compress — every target creates/refreshes .venv by itself when needed.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STRATEGY ?= naive
BENCHMARK ?= split_fmnist
ARGS ?=
FMNIST_DIR := /usr/share/datasets/fashion-mnist

.PHONY: help setup data exp list test test-slow lint bench bench-gpu bench-scale bench-long-streams bench-defaults bench-packnet bench-lrpet bench-cacl bench-ada-qpacknet bench-capacity clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'
	@echo "  variables: STRATEGY=$(STRATEGY) BENCHMARK=$(BENCHMARK) ARGS='<hydra overrides>'"

# The environment is the repository's own .venv, created here; a .venv that is a link to a
# shared environment is used as it is and never reinstalled or re-pointed (make test never
# installs into the system Python, never runs apt-get, writes nothing outside the repository
# and the temporary directory: tests/test_side_effects.py).
$(STAMP): pyproject.toml
	@if [ -L $(VENV) ]; then \
	  echo "note: $(VENV) is a link to a shared environment: used as it is, not reinstalled"; \
	  test -x $(PY) || { echo "error: $(VENV) links to no Python environment"; exit 1; }; \
	else \
	  test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	  $(PY) -m pip install -q --upgrade pip && $(PY) -m pip install -q -e '.[dev]' && touch $(STAMP); \
	fi

setup: $(STAMP) data ## create the virtualenv and fetch the local data

data: ## install Fashion-MNIST (Debian package dataset-fashion-mnist) when it is missing
	@if [ -n "$$CLC_DATA" ] || [ -d $(FMNIST_DIR) ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then apt-get install -y -q dataset-fashion-mnist >/dev/null || \
	  (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null); \
	elif sudo -n true 2>/dev/null; then sudo apt-get install -y -q dataset-fashion-mnist >/dev/null; \
	else echo "note: Fashion-MNIST missing; run 'sudo apt-get install dataset-fashion-mnist' or set CLC_DATA"; fi

exp: setup ## run one experiment: make exp STRATEGY=lrpet BENCHMARK=split_fmnist ARGS="train.epochs=3"
	$(PY) -m cl_compress.train strategy=$(STRATEGY) benchmark=$(BENCHMARK) $(ARGS)

list: $(STAMP) ## strategies and benchmarks with one-line descriptions
	@$(PY) -m cl_compress.cli list

test: $(STAMP) ## the default test suite (CPU, 2 workers, under 4 minutes on 2 cores; prints the slowest tests)
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15

test-slow: $(STAMP) ## the slow tests (full-size runs)
	$(PY) -m pytest -q -m slow

lint: $(STAMP) ## ruff lint and format check
	$(PY) -m ruff check cl_compress tests experiments

bench: setup ## framework overhead and per-strategy timings (prints figures)
	$(PY) -m experiments.bench $(ARGS)

bench-gpu: setup ## images/s vs a plain loop on a CUDA device (reduced ResNet-18, data on the device, crop+flip, fp32 and bf16), preset wall times
	$(PY) -m experiments.bench_gpu $(ARGS)

bench-scale: setup ## every strategy's cost on reduced ResNet-18, this CPU: ms/step vs naive, after-task ops, peak memory
	nice -n 10 $(PY) -m experiments.bench_scale $(ARGS)

bench-long-streams: setup ## 20- and 50-task synthetic runs: per-task stored size, state, checkpoint, FLOPs
	nice -n 10 $(PY) -m experiments.long_streams $(ARGS)

bench-defaults: setup ## every strategy at the embedded defaults (make exp STRATEGY=<each>), CACL acceptance check
	$(PY) -m experiments.defaults $(ARGS)

bench-packnet: setup ## our PackNet vs Avalanche's PackNet on split_fmnist
	$(PY) -m experiments.bench_packnet $(ARGS)

bench-lrpet: setup ## LRPET vs truncate-then-fine-tune vs no energy transfer
	$(PY) -m experiments.bench_lrpet $(ARGS)

bench-cacl: setup ## CACL vs individual vs packnet on split_fmnist
	$(PY) -m experiments.bench_cacl $(ARGS)

bench-ada-qpacknet: setup ## Ada-QPacknet vs PackNet on split_fmnist
	$(PY) -m experiments.bench_ada_qpacknet $(ARGS)

bench-capacity: setup ## capacity per task: Ada-QPacknet shared bits vs exclusive vs PackNet, 10 tasks
	$(PY) -m experiments.capacity $(ARGS)

clean: ## remove run outputs (keeps .venv)
	rm -rf runs multirun outputs wandb .pytest_cache

# --- strategy comparison (experiments/README.md) -----------------------------------------
STRATEGIES ?=
SEEDS ?=
PRESET ?=
LAUNCHER ?=
PARALLEL ?=
DIR ?=
TRIALS ?=
STORAGE ?=
.PHONY: compare compare-cpu compare-protocol tune

compare: setup ## sweep strategies x seeds + report: make compare [BENCHMARK="a b"] [STRATEGIES="a b"] [SEEDS="0 1 2"] [PRESET=cpu] [LAUNCHER=joblib|basic|submitit_local|submitit_slurm] [PARALLEL=N] [DIR=<sweep dir: same DIR resumes>] [ARGS=..]
	$(PY) -m cl_compress.launch.sweep $(if $(PRESET),--preset $(PRESET)) \
	  $(if $(filter command line environment,$(origin BENCHMARK)),--benchmarks "$(BENCHMARK)") \
	  $(if $(STRATEGIES),--strategies "$(STRATEGIES)") $(if $(SEEDS),--seeds "$(SEEDS)") \
	  $(if $(LAUNCHER),--launcher $(LAUNCHER)) $(if $(PARALLEL),--parallel $(PARALLEL)) \
	  $(if $(DIR),--dir "$(DIR)") $(ARGS)

tune: setup ## Optuna search of one strategy's hyper-parameters on a validation split: make tune STRATEGY=packnet [BENCHMARK=split_digits] [TRIALS=20] [PRESET=base] [STORAGE=<db url>] [ARGS=..]
	$(PY) -m cl_compress.launch.tune --strategy $(STRATEGY) --benchmark $(BENCHMARK) \
	  $(if $(TRIALS),--trials $(TRIALS)) $(if $(PRESET),--preset $(PRESET)) \
	  $(if $(STORAGE),--storage "$(STORAGE)") $(ARGS)

compare-cpu: ## the short CPU smoke comparison (100 steps/task): experiments/results/compare-cpu
	$(MAKE) compare PRESET=cpu

compare-protocol: ## the committed comparison, 1500 steps/task for every strategy: experiments/results/compare-protocol (60 runs; the first 54 took 42.2 min on 2 CPU cores)
	$(MAKE) compare PRESET=protocol
