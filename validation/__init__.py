"""Data quality gates: Great Expectations suites written as code, and the gates that run them.

- ``raw``: one suite per raw source, run on every raw day file before the pipeline reads it;
- ``features``: one suite per batch feature view (columns derived from the Feast view), run before
  materialization pushes a snapshot online;
- ``training_set``: run on a point-in-time training frame before any training.

Thresholds live beside the suites in ``validation/thresholds/*.json``; ``skewless validate profile`` proposes
new ones from known-good data and writes them only when asked. Importing this package imports neither Great
Expectations nor Feast and creates no folder: both happen only when a gate runs.
"""
