"""Drift of a window against its model's baseline: pure statistics and their calibrated limits."""
