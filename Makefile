# Skewless: `make demo` runs the whole story, `make test` runs the tests, `make bench` the benchmarks.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REDIS_URL ?= redis://localhost:6379
export REDIS_URL
DEMO_USERS ?= 5000
DEMO_DAYS ?= 21
DEMO_PORT ?= 8000
READY = $(BIN)/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$(DEMO_PORT)/ready', timeout=2)"
# Wait for the service started as $$pid; stop if it exits first (a port still held by the previous one, say).
WAIT_READY = for i in $$(seq 120); do kill -0 $$pid 2>/dev/null || { echo "serve: exited before it was ready" >&2; exit 1; }; \
	$(READY) 2>/dev/null && break; sleep 1; done
# The n-th newest raw day (the newest is yesterday; replayed days stay before the newest feature snapshot).
RAW_DAY = $$($(BIN)/python -c "import os; print(sorted(f for f in os.listdir('data/raw/transactions') if f.endswith('.parquet'))[-$(1)][:10])")
# The demo's drift touches age (and age_group, made from it), the amount (txn_amount, amount_to_typical) and the
# country (is_foreign_country); the monitor must flag those and nothing else.
define MONITOR_CHECK
import json, sys
from feature_repo.windows import service_windows
from skewless.settings import Settings
from skewless.store import feature_service, open_store
report = json.load(open("data/reports/monitoring/demo/report.json"))
flagged = set(report["summary"]["drifted_features"])
expected = {"age", "age_group", "amount", "txn_amount", "amount_to_typical", "country", "is_foreign_country"}
# Velocity features are computed from the replayed stream itself, so they move with it: amounts doubled, and the
# older customers' payments gathered onto one day. Those may drift too; nothing stored or unrelated may.
settings = Settings()
store = open_store(settings.repo_root)
windowed = {f.name for w in service_windows(store, feature_service(store, settings.feature_service)) for f in w.features}
missed, unrelated = expected - flagged, flagged - expected - windowed
if missed or unrelated:
    sys.exit(f"monitor: flagged {sorted(flagged)}; missed {sorted(missed)}, flagged unrelated {sorted(unrelated)}")
derived = sorted(flagged & windowed)
print(f"monitor: flagged the drifted features ({', '.join(sorted(flagged & expected))}), the velocity features "
      f"computed from the drifted stream ({', '.join(derived) or 'none'}), and nothing else; report in data/reports/monitoring/demo")
endef
export MONITOR_CHECK

.PHONY: install demo test lint format redis clean bench bench-offline bench-materialize bench-serving wrk

$(BIN)/skewless: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/skewless

install: $(BIN)/skewless

# Use the Redis at REDIS_URL; if none answers and it is local, start a throwaway redis-server (nothing on disk).
PING := $(BIN)/python -c "import os, redis; redis.Redis.from_url(os.environ['REDIS_URL'], socket_connect_timeout=1).ping()"
REDIS_PORT = $$($(BIN)/python -c "import os, urllib.parse as u; print(u.urlparse(os.environ['REDIS_URL']).port or 6379)")
REDIS_LOCAL = $$($(BIN)/python -c "import os, urllib.parse as u; print(u.urlparse(os.environ['REDIS_URL']).hostname in ('localhost', '127.0.0.1', '::1'))")
redis: install
	@if $(PING) 2>/dev/null; then \
		echo "redis: answering at $(REDIS_URL)"; \
	elif [ "$(REDIS_LOCAL)" = "True" ] && command -v redis-server >/dev/null; then \
		echo "redis: nothing at $(REDIS_URL); starting a throwaway local redis-server"; \
		redis-server --daemonize yes --bind 127.0.0.1 --port $(REDIS_PORT) --save '' --appendonly no --dir /tmp; \
		for i in $$(seq 50); do $(PING) 2>/dev/null && break; sleep 0.1; done; \
		$(PING) || { echo "redis: redis-server did not come up on port $(REDIS_PORT)" >&2; exit 1; }; \
	else \
		echo "redis: nothing answers at $(REDIS_URL) and no local redis-server to start." >&2; \
		echo "       Install one (Debian: apt-get install redis-server) or point REDIS_URL at a running Redis." >&2; \
		exit 1; \
	fi

# Redis keys of earlier demo runs: the service's own (decision and alert streams, real-time aggregate state) and
# Feast's online rows of the project (keys end with its name). Feast never overwrites a row with an older one, and
# the demo materializes up to the last raw day's start first, so rows from a later materialization must go.
CLEAR_DEMO_KEYS = $(BIN)/python -c "import os, redis; r = redis.Redis.from_url(os.environ['REDIS_URL']); \
	keys = [k for p in ('skewless:*', '*skewless') for k in r.scan_iter(match=p, count=1000)]; \
	[r.delete(*keys[i:i + 1000]) for i in range(0, len(keys), 1000)]; \
	print(f'redis: {len(keys)} keys of earlier demo runs removed')"

# Each run tells the story from scratch: its own data, feature store, registry and logs (under data/).
demo: install redis clean
	@$(CLEAR_DEMO_KEYS)
	$(BIN)/skewless generate --users $(DEMO_USERS) --days $(DEMO_DAYS) --quiet
	$(BIN)/skewless pipeline --quiet
	@echo "--- validation drill: a copy of the raw data with one day broken must be refused ---"
	@$(BIN)/skewless inject-fault --into data/drill --fault negative-amounts
	@SKEWLESS_REPO_ROOT=data/drill $(BIN)/skewless pipeline --quiet 2>&1 | tee data/drill/refusal.txt; \
	if grep -q "raw validation .* failed" data/drill/refusal.txt && [ ! -d data/drill/data/features ]; then \
		echo "drill: refused as expected; no feature table was written under data/drill"; \
	else echo "drill: the broken day was NOT refused" >&2; exit 1; fi
	$(BIN)/feast apply
	@echo "--- online store as of the last raw day's start: the skew replay below serves that day as it happened ---"
	$(BIN)/feast materialize-incremental $(call RAW_DAY,1)T00:00:00
	$(BIN)/skewless inspect
	$(BIN)/skewless train
	$(BIN)/skewless validate-model --version candidate
	$(BIN)/skewless approve --version candidate --by "$${USER:-demo}"
	$(BIN)/skewless deploy --version candidate
	$(BIN)/skewless models
	@echo "--- zero skew: the last raw day sent through /score one payment at a time, then rebuilt offline ---"
	@$(BIN)/skewless serve --port $(DEMO_PORT) & pid=$$!; trap "kill $$pid 2>/dev/null; wait $$pid 2>/dev/null || true" EXIT; \
	$(WAIT_READY); \
	$(BIN)/skewless replay --day $(call RAW_DAY,2) --warm-only --reset-realtime && \
	$(BIN)/skewless replay --url http://127.0.0.1:$(DEMO_PORT) --day $(call RAW_DAY,1) --one-by-one && \
	$(READY) && $(BIN)/skewless worker --once && $(BIN)/skewless skew --since $(call RAW_DAY,1)
	$(BIN)/feast materialize-incremental $$(date -u +%Y-%m-%dT%H:%M:%S)
	@echo "--- scoring service: start, score a few recent transactions, log the decisions ---"
	@$(BIN)/skewless serve --port $(DEMO_PORT) & pid=$$!; trap "kill $$pid 2>/dev/null; wait $$pid 2>/dev/null || true" EXIT; \
	$(WAIT_READY); \
	$(BIN)/skewless score-sample --url http://127.0.0.1:$(DEMO_PORT) && $(BIN)/skewless worker --once
	@echo "--- monitoring: two raw days replayed through the service, the second with drift injected ---"
	@echo "    (older users, amounts doubled, half the payments with a placeholder country)"
	@$(BIN)/skewless serve --port $(DEMO_PORT) & pid=$$!; trap "kill $$pid 2>/dev/null; wait $$pid 2>/dev/null || true" EXIT; \
	$(WAIT_READY); \
	$(BIN)/skewless replay --day $(call RAW_DAY,4) --warm-only --reset-realtime && \
	$(BIN)/skewless replay --url http://127.0.0.1:$(DEMO_PORT) --day $(call RAW_DAY,3) && \
	$(BIN)/skewless replay --url http://127.0.0.1:$(DEMO_PORT) --day $(call RAW_DAY,2) \
		--drift older-users,higher-amounts,broken-country && \
	$(READY) && $(BIN)/skewless worker --once
	@$(BIN)/skewless monitor --date $(call RAW_DAY,2) --against previous-window --out data/reports/monitoring/demo; \
	rc=$$?; [ $$rc -eq 1 ] || { echo "monitor: expected alerts (exit 1), got exit $$rc" >&2; exit 1; }; \
	$(BIN)/python -c "$$MONITOR_CHECK"
	@echo "--- release: a retrain promoted by its canary, then a deliberately bad challenger rolled back by it ---"
	@set -eo pipefail; SKEWLESS_CANARY_SHARE=0.5 $(BIN)/skewless serve --port $(DEMO_PORT) & pid=$$!; \
	trap "kill $$pid 2>/dev/null; wait $$pid 2>/dev/null || true" EXIT; $(WAIT_READY); \
	$(BIN)/skewless retrain --seed 1; \
	$(BIN)/skewless canary replay --url http://127.0.0.1:$(DEMO_PORT) --n 2500; \
	$(BIN)/skewless canary watch --until-decided --timeout 300 | tee data/reports/canary-retrain.txt; \
	grep -q PROMOTED data/reports/canary-retrain.txt || { echo "release: the retrain was not promoted" >&2; exit 1; }; \
	$(BIN)/skewless train --shuffle-labels --seed 2; \
	$(BIN)/skewless canary start --version candidate --drill --by demo; \
	$(BIN)/skewless canary replay --url http://127.0.0.1:$(DEMO_PORT) --n 2500 --skip 2500; \
	$(BIN)/skewless canary watch --until-decided --timeout 300 | tee data/reports/canary-drill.txt; \
	grep -q "ROLLED BACK" data/reports/canary-drill.txt || { echo "release: the drill was not rolled back" >&2; exit 1; }; \
	$(BIN)/skewless canary status; $(BIN)/skewless models; $(BIN)/skewless worker --once

bench: bench-offline bench-materialize bench-serving

bench-offline: install
	$(BIN)/python -m bench.offline --sizes $(or $(SIZES),small) $(BENCH_ARGS)

bench-materialize: install redis
	$(BIN)/python -m bench.materialize --sizes $(or $(SIZES),small) $(BENCH_ARGS)

bench-serving: install redis wrk
	$(BIN)/python -m bench.serving $(BENCH_ARGS)

# The load generator of bench-serving: Debian's wrk package, installed when we can, else a clear message.
wrk:
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }; }; } || \
		{ echo "bench-serving needs wrk: apt-get install wrk (or your system's package)" >&2; exit 1; }

test: install redis
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf data/raw data/features data/reports data/predictions data/drill data/mlartifacts data/*.db
