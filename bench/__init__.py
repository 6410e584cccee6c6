"""Benchmarks of the gateway: ingest, dispatch and growth (not part of the tests).

Run `uv run python -m bench.run_all --quick` for a short smoke run; see
docs/benchmarks.md for the commands and the latest results.
"""
