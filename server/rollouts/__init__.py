"""Staged rollouts: a pure core (policy, planner, gates, window) under a DB-backed executor."""
