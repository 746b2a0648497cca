"""Benchmarks: scripts run as files (`.venv/bin/python bench/policy.py`), importable for shared helpers."""
