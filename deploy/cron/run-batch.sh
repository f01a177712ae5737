#!/usr/bin/env bash
# The ml-engine chain for one batch, for cron (see deploy/cron/crontab) or any scheduler that
# runs a command: ingest -> clean -> detect_outliers -> build_features -> build_training_set
# -> [train when there is no champion yet] -> score -> drift_report; when the drift report
# exits 5 (data set drift), build_training_set and train run again (retraining).
#
# Jobs that always follow one another run in one `ml-engine run` (one Spark application: the
# JVM starts and warms up once, not once per job); each job still commits its own tables and
# its run log entry, and the first job that fails stops the run with its exit code.
#
# Usage: run-batch.sh BATCH_ID        (default: yesterday's date, UTC)
#
# Environment (cron passes only what the crontab sets, so every variable below and every
# ${VAR} the config reads must be set there):
#   ML_ENGINE           the ml-engine executable (default: ml-engine on PATH)
#   ML_ENGINE_CONFIG    the config file (required)
#   ML_ENGINE_RAW_ROOT  the directory of raw batches, one per batch (required): the batch's input
#                       is $ML_ENGINE_RAW_ROOT/BATCH_ID. It is ingest's ingest.path and is
#                       exported to every job as ML_ENGINE_RAW_PATH, which conf/cluster.yaml
#                       reads for ingest.path (every job resolves the config, not only ingest).
#   ML_ENGINE_MASTER    the Spark master every job runs on (--set spark.master=...), e.g.
#                       spark://HOST:7077; unset or empty: the config's spark.master
#                       (conf/cluster.yaml sets none of its own: it inherits local[*]).
#   ML_ENGINE_SET       extra key=value overrides, space separated (applied after the above).
#   ML_ENGINE_LOG_DIR   when set, the script appends its output to $ML_ENGINE_LOG_DIR/BATCH_ID.log,
#                       creating the directory if it is missing.
# The config's own variables: conf/cluster.yaml reads ML_ENGINE_STORAGE_ROOT and
# MLFLOW_TRACKING_URI (and ML_ENGINE_RAW_PATH, set here).
#
# Every job is idempotent per batch: rerunning the script for a batch replaces that batch's
# rows. The script exits with the first failing job's exit code (see README, "Exit codes").
set -uo pipefail
batch="${1:-$(date -u -d yesterday +%F)}"
ml_engine="${ML_ENGINE:-ml-engine}"
config="${ML_ENGINE_CONFIG:?set ML_ENGINE_CONFIG to the config file}"
raw_root="${ML_ENGINE_RAW_ROOT:?set ML_ENGINE_RAW_ROOT to the directory of raw batches}"
if [ -n "${ML_ENGINE_LOG_DIR:-}" ]; then
  mkdir -p "$ML_ENGINE_LOG_DIR" || {
    echo "run-batch.sh: cannot create ML_ENGINE_LOG_DIR=$ML_ENGINE_LOG_DIR; create it for user $(id -un) or set another directory" >&2
    exit 2
  }
  exec >>"$ML_ENGINE_LOG_DIR/$batch.log" 2>&1
fi
export ML_ENGINE_RAW_PATH="$raw_root/$batch"
sets=(--config "$config" --set "batch_id=$batch")
if [ -n "${ML_ENGINE_MASTER:-}" ]; then sets+=(--set "spark.master=$ML_ENGINE_MASTER"); fi
for kv in ${ML_ENGINE_SET:-}; do sets+=(--set "$kv"); done

run() { echo "== $* ($(date -u +%FT%TZ))"; "$ml_engine" run "$@" "${sets[@]}"; }

set -e
run ingest clean detect_outliers build_features build_training_set --set "ingest.path=$ML_ENGINE_RAW_PATH"
if ! "$ml_engine" model "${sets[@]}" >/dev/null 2>&1; then
  run train                                   # no champion yet
fi
set +e
run score drift_report --set drift.fail_on_drift=true   # exits 5 on data set drift
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "== data set drift: retraining"
  run build_training_set train
elif [ "$code" -ne 0 ]; then
  exit "$code"
fi
