"""Benchmarks, printed, not part of the test suite: run each from the repository root as
``.venv/bin/python -m bench.<name>`` (README, Benchmarks)."""
