#!/usr/bin/env bash
# The ml-engine chain for one batch, for cron (see deploy/cron/crontab) or any scheduler that
# runs a command: ingest -> clean -> detect_outliers -> build_features -> build_training_set
# -> [train when there is no champion yet] -> score -> drift_report; when the drift report
# exits 5 (data set drift), build_training_set and train run again (retraining).
#
# Usage: run-batch.sh BATCH_ID        (default: yesterday's date, UTC)
# Environment: ML_ENGINE (the ml-engine executable), ML_ENGINE_CONFIG (the config file),
# ML_ENGINE_RAW_ROOT (one raw input directory per batch), ML_ENGINE_SET (extra key=value
# overrides, space separated). Every job is idempotent per batch: rerunning the script for a
# batch replaces that batch's rows.
set -uo pipefail
batch="${1:-$(date -u -d yesterday +%F)}"
ml_engine="${ML_ENGINE:-ml-engine}"
config="${ML_ENGINE_CONFIG:?set ML_ENGINE_CONFIG to the config file}"
raw_root="${ML_ENGINE_RAW_ROOT:?set ML_ENGINE_RAW_ROOT to the directory of raw batches}"
sets=(--config "$config" --set "batch_id=$batch")
for kv in ${ML_ENGINE_SET:-}; do sets+=(--set "$kv"); done

run() { echo "== $* ($(date -u +%FT%TZ))"; "$ml_engine" run "$@" "${sets[@]}"; }

set -e
run ingest --set "ingest.path=$raw_root/$batch"
run clean
run detect_outliers
run build_features
run build_training_set
if ! "$ml_engine" model "${sets[@]}" >/dev/null 2>&1; then
  run train                                   # no champion yet
fi
run score
set +e
run drift_report --set drift.fail_on_drift=true
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "== data set drift: retraining"
  run build_training_set
  run train
elif [ "$code" -ne 0 ]; then
  exit "$code"
fi
