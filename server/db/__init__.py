"""Persistence: typed tables, the engine, and Alembic migrations.

Only services import from here; HTTP handlers and the CLI go through them.
"""
