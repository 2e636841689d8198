"""Feast store plugins, referenced by class path from feature_store.yaml."""
