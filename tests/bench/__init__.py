"""Benchmarks against limits measured in the same run (``make bench``); not collected by pytest."""
