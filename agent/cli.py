"""``edgefleet-agent``: the device-side entry point."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from edgefleet.shared import __version__

DEFAULT_CONFIG = "/etc/edgefleet/agent.toml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgefleet-agent",
        description=(
            "Run the edgefleet device agent: receive signed models over MQTT, verify and "
            "install them atomically, serve local inference, report telemetry and drift."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="PATH",
        help=f"agent configuration file (TOML, default: {DEFAULT_CONFIG})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.exit(
        2, "edgefleet-agent: the agent runtime is not built yet; only --help and --version work\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
