"""Feast definitions for Skewless: the one place every feature is defined."""
