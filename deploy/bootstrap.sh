#!/usr/bin/env bash
# Sets up everything edgefleet needs on a Debian machine, idempotently:
# system packages (only those missing), then a virtualenv with the project.
#   deploy/bootstrap.sh [EXTRAS]     EXTRAS defaults to "dev" (e.g. "server", "agent")
# Environment: VENV (default .venv), PYTHON (default python3), EDGEFLEET_SKIP_APT=1.
set -euo pipefail

cd "$(dirname "$0")/.."
extras="${1:-dev}"
venv="${VENV:-.venv}"
python="${PYTHON:-python3}"

say() { printf '[bootstrap] %s\n' "$*" >&2; }

# command -> Debian package that provides it
declare -A need=(
  [mosquitto]=mosquitto
  [mosquitto_pub]=mosquitto-clients
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${need[$cmd]}")
done
if [ "$extras" = dev ] && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql)
fi
# The browser tests drive Debian's Chromium through Playwright (never `playwright install`).
if [ "$extras" = dev ] && ! command -v chromium >/dev/null 2>&1; then
  missing+=(chromium)
fi
if ! "$python" -c "import ensurepip, venv" >/dev/null 2>&1; then
  missing+=(python3-venv)
fi

if [ "${#missing[@]}" -gt 0 ] && [ "${EDGEFLEET_SKIP_APT:-0}" != 1 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "missing system packages: ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
  say "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

"$python" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"edgefleet needs Python >= 3.11, found {sys.version.split()[0]}")
PY

project_hash="$(sha256sum <pyproject.toml | cut -c1-16)"
# A wider install satisfies a narrower request: dev includes server, which includes agent.
case "$extras" in
  agent) enough=(agent server dev) ;;
  server) enough=(server dev) ;;
  *) enough=("$extras") ;;
esac
for have in "${enough[@]}"; do
  if [ -f "$venv/.edgefleet-installed-$have-$project_hash" ]; then
    say "virtualenv $venv is up to date (edgefleet[$have])"
    exit 0
  fi
done
stamp="$venv/.edgefleet-installed-$extras-$project_hash"
if [ ! -x "$venv/bin/python" ]; then
  say "creating virtualenv $venv"
  "$python" -m venv "$venv"
fi
say "installing edgefleet[$extras] into $venv (first run downloads TensorFlow, a few minutes)"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet --progress-bar off -e ".[$extras]"
rm -f "$venv"/.edgefleet-installed-*
touch "$stamp"
say "done: $venv"
