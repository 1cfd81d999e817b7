"""Benchmarks against limits measured in the same run (``make bench``).

pytest collects only the ``test_*.py`` here: fast tests of the pure helpers (results, summary).
"""
