# The scoring service. Build: docker build -t skewless .  Run: docker run -e REDIS_URL=... -e MLFLOW_TRACKING_URI=... skewless
# The image holds code only; feature definitions come from the repo, features from Redis, the model from MLflow.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SKEWLESS_REPO_ROOT=/app \
    SKEWLESS_SERVE_HOST=0.0.0.0 \
    SKEWLESS_SERVE_PORT=8000 \
    SKEWLESS_SERVE_WORKERS=2

WORKDIR /app
COPY pyproject.toml README.md feature_store.yaml .feastignore ./
COPY skewless ./skewless
COPY data/*.py ./data/
COPY pipeline ./pipeline
COPY feature_repo ./feature_repo
COPY training ./training
COPY serving ./serving
COPY validation ./validation
COPY release ./release
COPY monitoring ./monitoring
# gcc: the service compiles the model's trees to a shared library (serving/native.py); without it, GTIL scores.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
RUN pip install . \
    && useradd --create-home --uid 10001 skewless \
    && mkdir -p /app/data \
    && chown -R skewless /app/data
USER skewless

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request, os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"SKEWLESS_SERVE_PORT\"]}/health', timeout=2)"
CMD ["skewless", "serve"]
