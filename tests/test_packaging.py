"""The package-dir mapping in pyproject.toml must list every subpackage.

setuptools does not discover subpackages under a mapped folder by itself; a
forgotten entry would install fine in editable mode and be missing from the
wheel a device installs.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"server": "edgefleet.server", "agent": "edgefleet.agent", "shared": "edgefleet.shared"}


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {v: k for k, v in MAPPED.items()}
    found = {
        ".".join([MAPPED[folder], *init.parent.relative_to(ROOT / folder).parts])
        for folder in MAPPED
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert found == set(config["packages"])


def test_agent_extra_holds_only_what_the_agent_may_import() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    names = {
        dep.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()
        for dep in extras["agent"]
    }
    assert names == {"paho-mqtt", "numpy", "cryptography", "tflite-runtime", "ai-edge-litert"}
