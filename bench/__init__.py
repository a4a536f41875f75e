"""Benchmarks: `python -m bench all` runs them and renders BENCHMARKS.md."""
