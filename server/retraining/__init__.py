"""Retraining: when a model's policy says to train a challenger, and on what."""
