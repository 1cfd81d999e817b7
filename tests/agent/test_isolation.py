"""The agent must run on a board that has only the ``[agent]`` dependencies.

The import is done in a fresh interpreter where every server-side package
raises on import, so a stray ``import sqlalchemy`` anywhere under
``edgefleet.agent`` or ``edgefleet.shared`` fails here rather than on a device.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = (
    "tensorflow",
    "keras",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "apscheduler",
    "pydantic",
    "pydantic_settings",
    "jinja2",
    "psycopg",
)

PROBE = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys

    BLOCKED = set(sys.argv[1].split(","))

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ImportError(f"server-only package imported: {name}")
            return None

    sys.meta_path.insert(0, Block())

    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the import blocker does not work")

    imported = []
    for package in ("edgefleet.shared", "edgefleet.agent"):
        root = importlib.import_module(package)
        imported.append(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            importlib.import_module(info.name)
            imported.append(info.name)
    leaked = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
    if leaked:
        raise SystemExit(f"leaked: {leaked}")
    print("\\n".join(imported))
    """
)


def test_agent_and_shared_import_without_server_dependencies() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(BLOCKED)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr or result.stdout
    imported = set(result.stdout.split())
    for module in (
        "edgefleet.agent",
        "edgefleet.agent.cli",
        "edgefleet.shared.trust",
        "edgefleet.shared.messages",
        "edgefleet.shared.admission",
    ):
        assert module in imported


def test_agent_cli_reports_its_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgefleet.agent.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.startswith("edgefleet-agent ")
