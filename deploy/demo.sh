#!/usr/bin/env bash
# The whole loop on one fresh Debian machine, in one command: installs what is
# missing (deploy/bootstrap.sh server: mosquitto, python3-venv, a virtualenv
# with edgefleet[server]; no PostgreSQL, the demo keeps its data in SQLite),
# then runs `edgefleet demo` with the arguments given here.
#   bash deploy/demo.sh [--keep-running] [--devices N] [--data-dir DIR] [--port P] [--broker-port P]
#   bash deploy/demo.sh --help
# An existing development virtualenv (.venv with edgefleet[dev]) is reused as it is.
# Environment: as deploy/bootstrap.sh (VENV, PYTHON, EDGEFLEET_SKIP_APT=1).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# Relative like bootstrap.sh reads it (from the checkout), while the demo's own
# arguments, --data-dir included, stay relative to where the user stands.
venv="${VENV:-.venv}"
case "$venv" in
  /*) ;;
  *) venv="$root/$venv" ;;
esac

say() { printf '[demo] %s\n' "$*" >&2; }

say "1/2 installing what the demo needs, if anything is missing (deploy/bootstrap.sh server)"
VENV="$venv" bash "$root/deploy/bootstrap.sh" server
say "2/2 running: edgefleet demo ${*@Q}"
exec "$venv/bin/edgefleet" demo "$@"
