"""Skewless: the composition root (settings, errors, command line) of the platform."""
