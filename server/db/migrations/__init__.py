"""Alembic migration scripts (a package so setuptools installs them as code)."""
