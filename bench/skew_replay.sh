#!/usr/bin/env bash
# Zero skew at scale: one day of ~100k payments sent through /score one at a time, logged, rebuilt offline.
#
# A repo root of its own (BENCH_ROOT, default /tmp/skewless-skew), its own Redis database (BENCH_REDIS_URL) and
# port, so it runs beside the demo. The online store holds what it held when the replayed day began and the
# real-time windows hold the day before it: the conditions of live traffic. Prints the skew table; exits non-zero
# on any mismatch. Usage: bench/skew_replay.sh [USERS] (default 60000: about 100k payments a day).
# The model served is the champion of MLFLOW_TRACKING_URI (default: the demo's store, so run `make demo` first);
# it must be trained on a feature service with windowed features (the default, fraud_model_v2). Only features
# are compared, so which version scores does not matter.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=$HERE/.venv/bin
USERS=${1:-60000}
export SKEWLESS_REPO_ROOT=${BENCH_ROOT:-/tmp/skewless-skew}
export REDIS_URL=${BENCH_REDIS_URL:-redis://localhost:6379/3}
export SKEWLESS_DECISION_STREAM=bench:skew:decisions
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$HERE/data/mlflow.db}
PORT=${BENCH_PORT:-8231}
rm -rf "$SKEWLESS_REPO_ROOT" && mkdir -p "$SKEWLESS_REPO_ROOT/data"
sed -e "s/^project: skewless$/project: skewless_skew_bench/" -e "s/validate_features: true/validate_features: false/" \
    "$HERE/feature_store.yaml" > "$SKEWLESS_REPO_ROOT/feature_store.yaml"  # the feature gate's thresholds assume weeks of history
cp -r "$HERE/feature_repo" "$HERE/.feastignore" "$SKEWLESS_REPO_ROOT/" 2>/dev/null || cp -r "$HERE/feature_repo" "$SKEWLESS_REPO_ROOT/"
"$BIN/python" -c "import os, redis; r = redis.Redis.from_url(os.environ['REDIS_URL']); r.flushdb()"
day() { "$BIN/python" -c "import os; print(sorted(os.listdir('$SKEWLESS_REPO_ROOT/data/raw/transactions'))[-$1][:10])"; }

t0=$(date +%s)
"$BIN/skewless" generate --users "$USERS" --days 3 --txns-per-user-day 1.7 --quiet
"$BIN/skewless" pipeline --quiet
(cd "$SKEWLESS_REPO_ROOT" && "$BIN/feast" apply >/dev/null && "$BIN/feast" materialize "$(day 3)T00:00:00" "$(day 1)T00:00:00" >/dev/null)
echo "setup: $(( $(date +%s) - t0 )) s"

"$BIN/skewless" serve --port "$PORT" >/dev/null 2>&1 & pid=$!
trap 'kill $pid 2>/dev/null' EXIT
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break; sleep 1; done
"$BIN/skewless" replay --day "$(day 2)" --warm-only --reset-realtime
t1=$(date +%s)
"$BIN/skewless" replay --url "http://127.0.0.1:$PORT" --day "$(day 1)" --one-by-one
echo "replay through /score: $(( $(date +%s) - t1 )) s"
"$BIN/skewless" worker --once
t2=$(date +%s)
"$BIN/skewless" skew --since "$(day 1)"
echo "skew report: $(( $(date +%s) - t2 )) s"
