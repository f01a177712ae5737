# The two commands: `make demo` and `make test`. Both create the environment first.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
WORKDIR ?= demo
ROWS    ?=

.PHONY: demo test test-cluster test-slow lint format env airflow-env check-java clean-demo benchmark

env: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10+ is needed; found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $(STAMP)

check-java:
	@command -v java >/dev/null 2>&1 || { [ -n "$$JAVA_HOME" ] && [ -x "$$JAVA_HOME/bin/java" ]; } || { \
	  echo "Java 17 is needed by Spark and was not found (no 'java' on PATH, no JAVA_HOME)."; \
	  echo "Install it: Debian/Ubuntu 'sudo apt-get install -y openjdk-17-jre-headless',"; \
	  echo "macOS 'brew install openjdk@17', or set JAVA_HOME to a Java 17 installation."; \
	  exit 1; }

demo: check-java env
	$(BIN)/ml-engine demo --workdir $(WORKDIR) $(if $(ROWS),--rows $(ROWS),)

test: check-java env
	$(BIN)/pytest

# The cluster and scheduler checks CI runs after `make test`: the whole chain on a standalone
# cluster losing a worker, the failures a cluster run cannot survive, the Airflow DAG.
CLUSTER_TESTS = tests/test_cluster_chain.py tests/test_cluster_failures.py tests/test_airflow_dag.py
test-cluster: check-java env airflow-env
	$(BIN)/pytest -m slow $(CLUSTER_TESTS)

# The long end-to-end trials (cluster chain, scheduler, README and --help commands).
test-slow: check-java env airflow-env
	$(BIN)/pytest -m slow

# Airflow in its own environment (its pins differ from the engine's); the DAG's tasks call
# the engine's ml-engine of $(VENV).
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_VERSION ?= 3.1.8
airflow-env: $(AIRFLOW_VENV)/.installed

$(AIRFLOW_VENV)/.installed:
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install --quiet "apache-airflow==$(AIRFLOW_VERSION)" apache-airflow-providers-apache-spark
	@touch $@

lint: env
	$(BIN)/ruff check ml_engine jobs tests benchmarks
	$(BIN)/ruff format --check ml_engine jobs tests benchmarks

format: env
	$(BIN)/ruff format ml_engine jobs tests benchmarks
	$(BIN)/ruff check --fix ml_engine jobs tests benchmarks

benchmark: check-java env
	$(BIN)/python benchmarks/bench_data_jobs.py

clean-demo:
	rm -rf $(WORKDIR)
