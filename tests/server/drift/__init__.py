"""Drift statistics, their calibration, and the drift target measured on synthetic sensors."""
