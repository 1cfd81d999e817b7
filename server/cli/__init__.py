"""``edgefleet``: the operator's command line and the server's entry point."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from edgefleet.shared import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgefleet",
        description=(
            "Operate an edgefleet: run the server, manage devices, groups, models, "
            "rollouts and drift from the command line."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
