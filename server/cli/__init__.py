"""``edgefleet``: the operator's command line and the server's entry point.

One module per concern: :mod:`.root` (the group and ``main``), :mod:`.local`
and :mod:`.keys` (on the server host, from settings), :mod:`.devices`,
:mod:`.groups`, :mod:`.models`, :mod:`.audit` (over the REST API through
:mod:`.client`), :mod:`.output` (tables and JSON), :mod:`.errors` (exit codes).
"""

from __future__ import annotations

from edgefleet.server.cli.errors import ExitCode
from edgefleet.server.cli.root import cli, main
from edgefleet.server.cli.wiring import Wiring

__all__ = ["ExitCode", "Wiring", "cli", "main"]
