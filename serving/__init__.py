"""Serving: online features plus a score over HTTP, and the worker that logs every decision."""
