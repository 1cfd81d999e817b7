"""``edgefleet-agent``: the device-side entry point."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import stat
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from edgefleet.agent import logs
from edgefleet.agent.errors import AgentConfigError, AgentError
from edgefleet.agent.update.updater import PhaseHook
from edgefleet.shared import __version__
from edgefleet.shared.agent_config import AgentConfig, parse_agent_config
from edgefleet.shared.errors import EdgefleetError
from edgefleet.shared.messages import UpdatePhase
from edgefleet.shared.profiles import HardwareProfile, Variant, parse_profile
from edgefleet.shared.trust import TrustStore

log = logging.getLogger("edgefleet.agent")

DEFAULT_CONFIG = "/etc/edgefleet/agent.toml"
PAUSE_ENV = "EDGEFLEET_AGENT_PAUSE_IN"
"""Test hook: the name of an update phase; the agent stops dead once it enters it."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TEMPFAIL = 75
EXIT_CONFIG = 78

EPILOG = f"""\
commands:
  run     (default) run the agent until SIGTERM or SIGINT
  check   validate the config and print what the agent would connect to

exit codes:
  {EXIT_OK}   stopped cleanly (SIGTERM/SIGINT), or the config checks out
  {EXIT_FAILED}   unexpected error (a bug: the log has the traceback)
  {EXIT_USAGE}   bad command line
  {EXIT_TEMPFAIL}  temporary failure: the data directory is unusable or locked by another
       agent, or no TFLite runtime is installed; systemd retries
  {EXIT_CONFIG}  the config file is missing, unreadable or invalid; retrying cannot help

A restart_agent command makes the agent stop cleanly and start again in the
same process (exec), so it works with or without systemd.
"""


@dataclass(frozen=True, slots=True)
class Loaded:
    config: AgentConfig
    profile: HardwareProfile
    profile_source: str


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgefleet-agent",
        description=(
            "Run the edgefleet device agent: receive signed models over MQTT, verify and "
            "install them atomically, serve local inference, report telemetry and drift."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "command", nargs="?", choices=("run", "check"), default="run", help="default: run"
    )
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="PATH",
        help=f"agent configuration file (TOML, default: {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--profiles",
        metavar="DIR",
        help="directory of hardware profiles (NAME.toml; default: 'profiles' beside the config)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    try:
        loaded = load(Path(args.config), None if args.profiles is None else Path(args.profiles))
    except AgentConfigError as err:
        print(f"edgefleet-agent: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check":
        print(describe(loaded, Path(args.config)))
        return EXIT_OK
    try:
        hook = pause_hook()
    except AgentConfigError as err:
        print(f"edgefleet-agent: {err}", file=sys.stderr)
        return EXIT_CONFIG
    return run(loaded, Path(args.config), list(sys.argv[1:] if argv is None else argv), hook)


def load(config_path: Path, profiles: Path | None) -> Loaded:
    """The config and the hardware profile it names, or :class:`AgentConfigError`."""
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as err:
        raise AgentConfigError(f"cannot read {config_path}: {err.strerror or err}") from err
    try:
        config = parse_agent_config(text)
    except EdgefleetError as err:
        raise AgentConfigError(f"{config_path}: {err}") from err
    directory = profiles or config_path.parent / "profiles"
    path = directory / f"{config.device.profile}.toml"
    try:
        profile = parse_profile(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fallback = HardwareProfile(
            name=config.device.profile,
            description="built-in defaults",
            variants=(Variant.FLOAT32,),
            threads=1,
            xnnpack=True,
        )
        return Loaded(config, fallback, f"built-in defaults ({path} not found)")
    except (OSError, EdgefleetError) as err:
        raise AgentConfigError(f"hardware profile {path}: {err}") from err
    if profile.name != config.device.profile:
        raise AgentConfigError(
            f"{path} describes profile {profile.name!r}, not {config.device.profile!r}"
        )
    return Loaded(config, profile, str(path))


def describe(loaded: Loaded, config_path: Path) -> str:
    """What ``check`` prints: everything the agent would use, and what looks unsafe."""
    config, profile = loaded.config, loaded.profile
    broker = config.broker
    scheme = "mqtts" if broker.tls_ca else "mqtt"
    root = TrustStore.pin(config.trust.root_envelope()).root
    api = config.inference
    lines = [
        f"config:      {config_path}",
        f"device:      {config.device.id}",
        f"profile:     {profile.name} ({profile.threads} thread(s), XNNPACK "
        f"{'on' if profile.xnnpack else 'off'}; from {loaded.profile_source})",
        f"broker:      {scheme}://{broker.host}:{broker.port} as {broker.username}"
        + (f" (CA {broker.tls_ca})" if broker.tls_ca else ""),
        f"data dir:    {config.device.data_dir}",
        f"pinned root: v{root.version}, {root.threshold} of {len(root.keys)} keys "
        f"({', '.join(k.keyid[:12] for k in root.keys)}), expires {root.expires_at}",
        "local API:   "
        + (f"unix:{api.unix_socket}" if api.unix_socket else f"http://{api.host}:{api.port}"),
    ]
    lines += [f"warning:     {w}" for w in warnings(config, config_path)]
    return "\n".join(lines)


def warnings(config: AgentConfig, config_path: Path) -> list[str]:
    found = []
    if config.broker.tls_ca is None and config.broker.host not in ("127.0.0.1", "::1", "localhost"):
        found.append("the broker connection is not encrypted (set broker.tls_ca)")
    try:
        mode = config_path.stat().st_mode
    except OSError:
        mode = 0
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        found.append(f"{config_path} holds the broker password and is readable by others")
    if config.inference.unix_socket is None and config.inference.host not in ("127.0.0.1", "::1"):
        found.append("the local inference API listens beyond loopback")
    return found


def run(loaded: Loaded, config_path: Path, argv: list[str], hook: PhaseHook | None) -> int:
    # Imported here: numpy and the runtime are not needed for --help, --version or check.
    from edgefleet.agent.agent import Agent, Exit
    from edgefleet.agent.local_api import LocalApi

    config = loaded.config
    for warning in warnings(config, config_path):
        log.warning("%s", warning)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        agent = Agent.from_config(
            config,
            profile=loaded.profile,
            on_phase=hook,
            server=lambda service: LocalApi(service, config.inference),
        )
        outcome = agent.run(stop)
    except AgentError as err:
        log.error("cannot run: %s", err)  # noqa: TRY400
        return EXIT_TEMPFAIL
    if outcome is Exit.RESTART:
        log.info("restarting")
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, "-m", "edgefleet.agent.cli", *argv])  # noqa: S606
    return EXIT_OK


def pause_hook() -> PhaseHook | None:
    """From :data:`PAUSE_ENV`: stop dead on entering that phase, so a test can SIGKILL there."""
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted:
        return None
    try:
        target = UpdatePhase(wanted)
    except ValueError as err:
        raise AgentConfigError(f"{PAUSE_ENV}={wanted!r} is not an update phase") from err

    def hook(phase: UpdatePhase) -> None:
        if phase is target:
            print(f"edgefleet-agent: paused in {phase.value}", file=sys.stderr, flush=True)
            threading.Event().wait()

    return hook


if __name__ == "__main__":
    raise SystemExit(main())
