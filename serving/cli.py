"""`skewless serve` and `skewless worker`."""

from __future__ import annotations

import argparse
import logging
import signal

from skewless.cli_types import register_command
from skewless.settings import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import os

    import uvicorn

    # Workers are separate processes: they read the same settings from the environment.
    os.environ["SKEWLESS_REPO_ROOT"] = str(settings.repo_root.resolve())
    uvicorn.run(
        "serving.app:app_from_env",
        factory=True,
        host=args.host or settings.serve_host,
        port=args.port or settings.serve_port,
        workers=args.workers or settings.serve_workers,
        access_log=False,
        log_level="warning",
    )
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    import redis

    from serving.worker import PredictionLogWorker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    worker = PredictionLogWorker(
        client, settings.decision_stream, settings.worker_group, settings.predictions_dir, settings.worker_batch
    )
    worker.run(should_stop=lambda: stopping or (args.once and worker.idle))
    print(f"worker stopped: {worker.written:,} decisions written to {settings.predictions_dir}")
    return 0


def _score_sample(args: argparse.Namespace, settings: Settings) -> int:
    from serving.sample import score_sample

    print(f"{'txn':>9} {'amount':>9} {'country':>7} {'channel':>7} {'kind':>17}  {'score':>6} {'decision':<8} reasons")
    for txn, result in score_sample(settings, args.url, args.n):
        reasons = "; ".join(result["reasons"]) or "-"
        print(
            f"{txn['txn_id']:>9} {txn['amount']:>9.2f} {txn['country']:>7} {txn['channel']:>7} {txn['kind']:>17}  "
            f"{result['risk_score']:>6.3f} {result['recommendation']:<8} {reasons}"
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    serve = register_command(sub, "serve", "run the scoring service (FastAPI under uvicorn)", _serve)
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=int, default=None, help="uvicorn worker processes")

    sample = register_command(sub, "score-sample", "score recent ordinary and fraudulent transactions", _score_sample)
    sample.add_argument("--url", default="http://127.0.0.1:8000", help="where the service listens")
    sample.add_argument("--n", type=int, default=6, help="how many transactions")

    worker = register_command(sub, "worker", "write logged decisions from the stream to Parquet", _worker)
    worker.add_argument("--once", action="store_true", help="stop when the stream has nothing left")
