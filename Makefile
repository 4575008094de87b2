# Two commands do everything on a fresh machine:
#   make select   # venv + install + RAP selection on the embedded default (easy-VQA, demo model)
#   make test     # venv + install + the test suite
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: install constraints wheelhouse select retune validate experiment calibrate server deploy worker mlflow bench gpu-check test clean-data

$(BIN)/rap: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	# torch first, alone: the tested CPU wheel; anything else would pull a CUDA build
	$(BIN)/pip install -q -c constraints.txt torch
	# pyproject.toml's ranges, at the exact versions the suite was run with
	$(BIN)/pip install -q -c constraints.txt -e ".[test,ui]"
	touch $(BIN)/rap

install: $(BIN)/rap

# constraints.txt again from the installed venv (after an upgrade that passed `make test`)
constraints: install
	$(BIN)/python .ci/constraints.py > constraints.txt

# wheels for an offline GPU node (README "On a GPU node without internet"):
#   make wheelhouse PY=3.12 HAVE=node-packages.txt WHEELHOUSE=/tmp/wh PART_MIB=60
PY ?= 3.12
HAVE ?=
WHEELHOUSE ?= wheelhouse
PART_MIB ?= 60
wheelhouse: install
	$(BIN)/python .ci/wheelhouse.py --python $(PY) $(if $(HAVE),--have $(HAVE)) \
		--out $(WHEELHOUSE) --part-mib $(PART_MIB)

select: install
	$(BIN)/rap select $(ARGS)

retune: install
	$(BIN)/rap retune $(ARGS)

validate: install
	$(BIN)/rap validate $(ARGS)

# the GRPO miniature: six arms, five seeds, about 46 min on 2 cores (README)
experiment: install
	$(BIN)/rap experiment $(ARGS)

# its budget's calibration runs (never on an arm)
calibrate: install
	$(BIN)/rap experiment --calibrate $(ARGS)

# Prefect server, deployments and worker (README: "Run with a Prefect server")
server: install
	$(BIN)/rap server start $(ARGS)

deploy: install
	$(BIN)/rap server deploy $(ARGS)

worker: install
	$(BIN)/rap server worker $(ARGS)

# MLflow's UI over the data folder's runs (README "See what was selected")
mlflow: install
	$(BIN)/rap server mlflow $(ARGS)

# Benchmarks (README "Performance"): each prints its figures
bench: install
	$(BIN)/python bench/orchestration.py
	$(BIN)/python bench/rollouts.py
	$(BIN)/python bench/attention_memory.py
	$(BIN)/python bench/retune.py
	$(BIN)/python bench/scaling.py
	$(BIN)/python bench/large_model.py
	$(BIN)/python bench/settled_rollouts.py
	$(BIN)/python bench/engines.py
	$(BIN)/python bench/report_size.py
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/engine.py --profile

# On a GPU machine, in an environment with rap on a CUDA torch (README "Performance")
gpu-check:
	bash bench/gpu_check.sh $(ARGS)

# two workers, a test file each at a time (a file's fixtures are set up once): most tests
# wait on a subprocess or a server half the time; TEST_WORKERS=0 runs them in this process
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(ARGS)

clean-data:
	rm -rf rap_data
