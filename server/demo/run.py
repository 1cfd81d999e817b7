"""``edgefleet demo``: the whole loop on one machine, unattended, in a few minutes.

Broker, server and a simulated fleet are started here as they run in
production (a Mosquitto from ``edgefleet broker init``, ``edgefleet server``
as its own process, agents with their own accounts); everything after that
goes through the REST API an operator would use. The demo plays the
operator twice: it rolls the first model out, and it labels the edge
samples the server collects, with the synthetic generator's true labels
(a field engineer's job in real life). Detection, the trigger, the
challenger's training, its comparison with the champion and the second
staged rollout are the server's own doing.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
import numpy as np

from edgefleet.server.broker_setup import init_broker, read_env
from edgefleet.server.cli.client import ApiClient
from edgefleet.server.cli.connection import Connection
from edgefleet.server.demo.preflight import require_ready
from edgefleet.server.errors import ConfigError, ServerError
from edgefleet.server.sim.broker import LocalBroker
from edgefleet.server.sim.data import NO_DRIFT, DriftSetting, synthetic_pool
from edgefleet.server.sim.fleet import HostedFleet
from edgefleet.server.sim.orders import DriftOn, HostDevice, HostSpec
from edgefleet.server.sim.provision import (
    PROFILE,
    ProvisionedFleet,
    device_states,
    provision,
    server_group,
    sim_config,
)
from edgefleet.server.sim.runner import profile_toml
from edgefleet.server.sim.scenario import FleetSpec
from edgefleet.shared.agent_config import UpdateSection

MODEL = "vibration"
DATASET = "vibration-demo"
STEPS = 32
"""Readings per sensor window (the model's input: 32 steps x 3 channels)."""
DRIFT = DriftSetting(sigma=4.0, channels=("temperature",))
"""Site B's temperature sensors read 4 standard deviations warm (a recalibrated probe)."""
MARKER = ".edgefleet-demo"
PREFIX = "demo"
"""Devices are ``demo-00001``...; the groups below are named on the server as the simulator
names its groups."""
SITE_A, SITE_B = "site-a", "site-b"
"""The fleet's two groups as the simulator's fleet spec names them."""
GROUP_A, GROUP_B = server_group(PREFIX, SITE_A), server_group(PREFIX, SITE_B)
FLEET_GROUP = server_group(PREFIX, "fleet")
"""Every device: the first rollout's target."""
UPDATE = UpdateSection(probation_seconds=3.0, max_latency_ratio=50.0)
"""Two cores run the fleet, the server and TensorFlow: latency jumps on scheduling
alone, so the agents' own latency limit is loose here."""


@dataclass(frozen=True)
class DemoOptions:
    data_dir: Path
    devices: int = 12
    api_port: int = 8080
    broker_port: int = 1883
    keep_running: bool = False
    epochs: int = 15
    window_seconds: float = 3.0
    inference_hz: float = 40.0
    timeout: float = 600.0
    """The whole demo's bound: it fails, saying where it was, rather than hang."""


class DemoError(ServerError):
    reason = "demo_failed"


class Progress:
    """Numbered steps with the elapsed time, so a user sees where the minutes go."""

    def __init__(self, out: TextIO, total: int) -> None:
        self._out = out
        self._total = total
        self._step = 0
        self.started = time.monotonic()

    def step(self, text: str) -> None:
        self._step += 1
        self._print(f"[{self._step}/{self._total}] {text}")

    def note(self, text: str) -> None:
        self._print(f"      {text}")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _print(self, text: str) -> None:
        print(f"{self.elapsed():6.0f}s  {text}", file=self._out, flush=True)


def prepare_dir(data_dir: Path) -> Path:
    """A fresh demo directory: one a previous demo left (it has the marker) is wiped;
    anything else that is not empty is refused rather than deleted."""
    data_dir = data_dir.resolve()
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / MARKER).exists():
            raise ConfigError(
                f"{data_dir} is not empty and was not made by the demo; "
                "choose another with --data-dir"
            )
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("made by edgefleet demo; deleted by the next demo run\n")
    return data_dir


def fleet_spec(options: DemoOptions) -> FleetSpec:
    """A third of the fleet (at least one device) is site A, the rest site B."""
    count = options.devices
    size_a = max(1, math.ceil(count / 3))
    return FleetSpec(
        devices=count,
        model=MODEL,
        duration=options.timeout,
        seed=1,
        inference_hz=options.inference_hz,
        window_seconds=options.window_seconds,
        groups=((SITE_A, size_a), (SITE_B, count - size_a)),
    )


def host_devices(made: ProvisionedFleet, spec: FleetSpec, data_dir: Path) -> list[HostDevice]:
    """The provisioned configs as the simulator host runs them, with the demo's loose
    latency limit; each agent keeps its files under ``data_dir/agents``."""
    group_of = {d: group for group, ids in made.groups.items() for d in ids}
    return [
        HostDevice(
            sim_config(
                config,
                data_dir=data_dir / "agents" / device_id,
                window_seconds=spec.window_seconds,
                update=UPDATE,
            ),
            group=group_of[device_id],
            offset=index * 17,
        )
        for index, (device_id, config) in enumerate(made.configs.items())
    ]


class Demo:
    def __init__(self, options: DemoOptions, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.progress = Progress(out, total=11)
        self.data_dir = options.data_dir
        self.broker: LocalBroker | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.fleet: HostedFleet | None = None
        self.api: ApiClient | None = None
        self.token = ""
        self.report: dict[str, Any] = {}
        self._http: httpx.Client | None = None
        self._deadline = 0.0

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        options = self.options
        require_ready(
            data_dir=options.data_dir, api_port=options.api_port, broker_port=options.broker_port
        )
        self.data_dir = prepare_dir(options.data_dir)
        self._deadline = time.monotonic() + options.timeout
        try:
            self._loop()
        except BaseException:
            self.stop()
            raise
        if not options.keep_running:
            self.stop()
        return self.report

    def _loop(self) -> None:
        p = self.progress
        p.step(f"broker: Mosquitto on 127.0.0.1:{self.options.broker_port} (dynamic security)")
        server_env = self._start_broker()
        p.step(f"server: edgefleet server on 127.0.0.1:{self.options.api_port} (SQLite)")
        self._start_server(server_env)
        p.note(f"API docs {self._url}/docs   token {self.token}")
        p.step(f"fleet: {self.options.devices} simulated devices in groups {GROUP_A} and {GROUP_B}")
        site_a, site_b = self._provision()
        p.step("dataset: synthetic vibration windows (32 steps x 3 channels, 4 fault classes)")
        self._call("POST", f"/datasets/{DATASET}/versions", data=self._synthetic_form())
        p.step("train: cnn1d with Keras, quantize to TFLite for the device profile, sign (Ed25519)")
        champion = self._train()
        p.step(f"rollout 1: v{champion} to the whole fleet in two waves (50%, 100%)")
        self._roll_out(champion, FLEET_GROUP, site_a + site_b)
        p.step("telemetry: every device reports inference counts, latency and drift sketches")
        self._retraining_policy(len(site_b))
        self._show_telemetry()
        p.step(f"drift: {GROUP_B}'s temperature now reads {DRIFT.sigma:g} sigma warm")
        drift_at = time.monotonic()
        drift_since = time.time()
        self._sim.order(DriftOn(tuple(site_b), DRIFT, None))
        self._wait_drift(site_b)
        self.report["seconds_to_detect"] = round(time.monotonic() - drift_at, 1)
        p.step("retrain: the policy triggers; labelling edge samples (the operator's part)")
        run = self._retrain(site_b, drift_since)
        p.step(f"rollout 2: v{run['challenger_version']} to {GROUP_B}, staged by the policy")
        self._finish(run, site_a, site_b, champion)
        self.report["seconds_total"] = round(self.progress.elapsed(), 1)
        p.step("done: " + self._summary())

    # -- services -----------------------------------------------------------------------------

    @property
    def _url(self) -> str:
        return f"http://127.0.0.1:{self.options.api_port}"

    @property
    def _sim(self) -> HostedFleet:
        if self.fleet is None:
            raise DemoError("the fleet is not running")
        return self.fleet

    def _start_broker(self) -> dict[str, str]:
        # Mosquitto, started as root, drops to its own user before it rewrites its plugin
        # file: a data directory under /root (mode 0700) would be out of its reach, so the
        # broker's directory lives under the temp directory, which every user can cross.
        directory = (
            Path(tempfile.gettempdir()) / f"edgefleet-demo-broker-{self.options.broker_port}"
        )
        shutil.rmtree(directory, ignore_errors=True)
        files = init_broker(directory, port=self.options.broker_port)
        self.broker = LocalBroker(
            files,
            host="127.0.0.1",
            port=self.options.broker_port,
            log_path=self.data_dir / "broker.log",
        )
        self.broker.start()
        return read_env(files.env)

    def _start_server(self, broker_env: dict[str, str]) -> None:
        env = {
            **os.environ,
            **broker_env,
            "EDGEFLEET_DATA_DIR": str(self.data_dir / "server"),
            "EDGEFLEET_API_PORT": str(self.options.api_port),
            "EDGEFLEET_ROLLOUT_TICK_SECONDS": "1",
            "EDGEFLEET_RETRAINING_TICK_SECONDS": "2",
        }
        command = [sys.executable, "-c", "from edgefleet.server.cli import main; main()"]
        # The root key stays in the demo directory: a real fleet keeps it offline.
        self._run_cli(
            [*command, "keys", "init", "--root-dir", str(self.data_dir / "root-key")], env
        )
        log = (self.data_dir / "server.log").open("ab")
        self.server = subprocess.Popen(  # noqa: S603  our own interpreter and module
            [*command, "server"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self._http = httpx.Client(base_url=self._url, timeout=60.0)
        self._wait("the server to answer", self._healthy, 90)
        created = self._run_cli(
            [*command, "tokens", "create", "demo", "--role", "admin", "--json"], env
        )
        self.token = json.loads(created)["token"]
        self.api = ApiClient(self._http, Connection(self._url, self.token, Path("-")))
        self.report["api"] = self._url
        self.report["token"] = self.token

    def _run_cli(self, command: list[str], env: dict[str, str]) -> str:
        done = subprocess.run(  # noqa: S603  our own interpreter and module
            command, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise DemoError(f"{' '.join(command[3:5])} failed: {done.stderr.strip()}")
        return done.stdout

    def _healthy(self) -> bool:
        if self.server is not None and self.server.poll() is not None:
            raise DemoError(f"the server exited; see {self.data_dir / 'server.log'}")
        try:
            return self._client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    @property
    def _client(self) -> httpx.Client:
        if self._http is None:
            raise DemoError("the server is not running")
        return self._http

    @property
    def _api(self) -> ApiClient:
        if self.api is None:
            raise DemoError("no API connection")
        return self.api

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        if method == "GET":
            return self._api.get(path, params=kwargs.get("params"))
        if method == "PATCH":
            return self._api.patch(path, json=kwargs["json"])
        if method == "PUT":
            return self._api.put(path, json=kwargs["json"])
        return self._api.post(path, **kwargs)

    def _wait(self, what: str, condition: Callable[[], Any], timeout: float) -> Any:
        deadline = min(time.monotonic() + timeout, self._deadline)
        while True:
            result = condition()
            if result:
                return result
            if time.monotonic() > deadline:
                raise DemoError(f"gave up waiting for {what} after {self.progress.elapsed():.0f} s")
            time.sleep(0.5)

    # -- fleet --------------------------------------------------------------------------------

    def _provision(self) -> tuple[list[str], list[str]]:
        spec = fleet_spec(self.options)
        made = provision(
            self._api, fleet=spec, prefix=PREFIX, data_dir=self.data_dir, say=self.progress.note
        )
        ids = list(made.configs)
        self._call("POST", "/groups", json={"name": FLEET_GROUP, "kind": "static", "members": ids})
        host = HostSpec(
            devices=(),
            profile_toml=profile_toml(),
            inference_hz=spec.inference_hz,
            data=spec.data,
            seed=spec.seed,
            log_level="ERROR",
        )
        self.fleet = HostedFleet(host_devices(made, spec, self.data_dir), host, processes=1)
        self.fleet.start()
        self._wait("every device online", lambda: self._online(ids), 60)
        site_a, site_b = list(made.groups[SITE_A]), list(made.groups[SITE_B])
        self.progress.note(
            f"{len(ids)} agents online ({GROUP_A} {len(site_a)}, {GROUP_B} {len(site_b)})"
        )
        return site_a, site_b

    def _online(self, ids: list[str]) -> bool:
        return set(device_states(self._api, PREFIX, state="online")) >= set(ids)

    def _synthetic_form(self) -> dict[str, str]:
        spec = {"count": 800, "window": STEPS, "seed": 1}
        return {"format": "synthetic", "synthetic": json.dumps(spec)}

    # -- models -------------------------------------------------------------------------------

    def _train(self) -> int:
        job = self._call(
            "POST",
            "/training/jobs",
            json={
                "model": MODEL,
                "dataset": DATASET,
                "recipe": "cnn1d",
                "profiles": [PROFILE],
                "params": {"epochs": self.options.epochs, "patience": 3},
            },
        )
        done = self._wait("the training job", lambda: self._finished(job["id"]), 400)
        if done["state"] != "succeeded":
            raise DemoError(f"training {done['state']}: {done.get('error')}")
        version = int(done["model_version"])
        detail = self._call("GET", f"/models/{MODEL}/versions/{version}")
        for artifact in detail.get("artifacts", []):
            self.progress.note(
                f"v{version} {artifact.get('variant')}: {artifact.get('size')} bytes, "
                f"sha256 {str(artifact.get('sha256'))[:12]}..."
            )
        self.report["champion_metrics"] = done.get("metrics")
        self._call("PATCH", f"/models/{MODEL}/versions/{version}", json={"stage": "approved"})
        return version

    def _finished(self, job_id: Any) -> dict[str, Any] | None:
        job: dict[str, Any] = self._call("GET", f"/training/jobs/{job_id}")
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

    def _roll_out(self, version: int, group: str, devices: list[str]) -> None:
        created = self._call(
            "POST",
            "/rollouts",
            json={
                "group": group,
                "model": MODEL,
                "version": version,
                "policy": {
                    "waves": [
                        {"percent": 50, "soak_seconds": 5},
                        {"percent": 100, "soak_seconds": 5},
                    ],
                    "gates": {"max_p95_latency_ratio": None},
                },
            },
        )
        self._call("POST", f"/rollouts/{created['id']}/start")
        status = self._wait_rollout(created["id"])
        self._wait(f"devices serving v{version}", lambda: self._serving(devices, version), 60)
        self.report.setdefault("rollouts", []).append(status)

    def _wait_rollout(self, rollout_id: str) -> dict[str, Any]:
        seen: list[str] = []

        def ended() -> dict[str, Any] | None:
            status: dict[str, Any] = self._call("GET", f"/rollouts/{rollout_id}")
            waves = " ".join(f"{w['state']}" for w in status["waves"])
            line = f"rollout {rollout_id[:8]}: {status['state']}, waves: {waves}"
            if not seen or seen[-1] != line:
                seen.append(line)
                self.progress.note(line)
            return status if status["state"] in ("completed", "aborted") else None

        status: dict[str, Any] = self._wait("the rollout", ended, 300)
        if status["state"] != "completed":
            raise DemoError(f"rollout {rollout_id} aborted: {status.get('reason')}")
        return status

    def _serving(self, devices: list[str], version: int) -> bool:
        rows = [r for host in self._sim.report() for r in host["devices"]]
        wanted = set(devices)
        return all(r["version"] == version for r in rows if r["id"] in wanted)

    # -- drift and retraining -------------------------------------------------------------------

    def _retraining_policy(self, drifting: int) -> None:
        self._call(
            "PUT",
            f"/models/{MODEL}/retraining-policy",
            json={
                "group": GROUP_B,
                "drift": {"consecutive_windows": 2, "min_devices": max(1, drifting // 2)},
                # A few hundred fresh samples against thousands of original rows: counted
                # five times, they teach the shift even in a short (three-epoch) run.
                "data": {"edge_weight": 5},
                "comparison": {
                    "min_holdout": 20,
                    "min_gain_points": 1.0,
                    "forget_budget_points": 5.0,
                },
                "approval": "automatic",
                "rollout_policy": {
                    "waves": [
                        {"percent": 50, "soak_seconds": 5},
                        {"percent": 100, "soak_seconds": 5},
                    ],
                    # A challenger trained for the drift is meant to change the predictions:
                    # the output-shift gate would stop exactly the fix (errors stay gated).
                    "gates": {"max_p95_latency_ratio": None, "max_output_psi": None},
                },
            },
        )

    def _show_telemetry(self) -> None:
        time.sleep(2 * self.options.window_seconds)
        rows = [r for host in self._sim.report() for r in host["devices"]]
        inferences = sum(r["inferences"] for r in rows)
        acked = sum(r["acked"] for r in rows)
        self.progress.note(
            f"{inferences} inferences on devices so far; {acked} messages acknowledged by the "
            "broker; drift status before the change:"
        )
        self._print_drift()

    def _print_drift(self) -> None:
        status: dict[str, Any] = self._call("GET", "/drift/status", params={"model": MODEL})
        for device in sorted(status["devices"], key=lambda d: d["device"]):
            score = "-" if device["score"] is None else f"{device['score']:.2f}"
            flag = "  FLAGGED" if device["flagged"] else ""
            self.progress.note(
                f"  {device['device']}  v{device['version']}  drift score {score}{flag}"
            )

    def _wait_drift(self, site_b: list[str]) -> None:
        def flagged() -> bool:
            status: dict[str, Any] = self._call("GET", "/drift/status", params={"model": MODEL})
            hot = {d["device"] for d in status["devices"] if d["flagged"]}
            return len(hot & set(site_b)) >= max(1, len(site_b) // 2)

        self._wait(f"drift to be flagged on {GROUP_B}", flagged, 120)
        self.progress.note(f"drift flagged on {GROUP_B} devices:")
        self._print_drift()

    def _truth(self) -> dict[bytes, str]:
        """The generator's true label of every row a device can have served."""
        labels = ("normal", "imbalance", "bearing", "overheat")
        truth = {}
        for setting in (NO_DRIFT, DRIFT):
            made = synthetic_pool((1, STEPS, 3), setting, seed=1)
            if made is None:
                raise DemoError("the synthetic data does not fit the model")
            rows, classes = made
            for row, label in zip(rows, classes, strict=True):
                truth[row[0].astype("<f4").tobytes()] = labels[int(label)]
        return truth

    def _retrain(self, site_b: list[str], drift_since: float) -> dict[str, Any]:
        """Label what site B's devices sent since the drift began, as an operator would:
        the challenger is judged on the newest labelled rows, and rows from before the
        shift would judge it on what the champion already handles."""
        run = self._wait("a retraining run", self._current_run, 120)
        self.progress.note(f"run {run['id']}: triggered by {run['trigger'].get('reason')}")
        truth = self._truth()
        labelled = 0
        while (run := self._current_run()) is not None and run["state"] == "waiting_for_labels":
            labelled += sum(self._label(truth, device, drift_since) for device in site_b)
            if time.monotonic() > self._deadline:
                raise DemoError("the retraining run waited for labels past the time limit")
            time.sleep(1.0)
        self.progress.note(f"labelled {labelled} edge samples; the challenger is training")
        self.report["labelled_samples"] = labelled
        decided = self._wait(
            "the retraining decision",
            lambda: (
                (r := self._current_run()) is not None
                and r["state"] not in ("waiting_for_labels", "training")
                and r
            ),
            400,
        )
        if decided["state"] != "promoted":
            raise DemoError(f"retraining ended {decided['state']}: {decided.get('reason')}")
        measured = decided["decision"]["measured"]
        self.progress.note(
            f"accuracy on {GROUP_B}'s new data: champion "
            f"{measured['new']['champion']:.3f}, challenger {measured['new']['challenger']:.3f}"
        )
        self.report["retraining"] = {k: decided.get(k) for k in ("state", "decision", "trigger")}
        return dict(decided)

    def _current_run(self) -> dict[str, Any] | None:
        runs = self._call("GET", "/retraining/runs", params={"model": MODEL})
        items = runs["items"] if isinstance(runs, dict) else runs
        return max(items, key=lambda r: r["id"]) if items else None

    def _label(self, truth: dict[bytes, str], device: str, since: float) -> int:
        params = {"model": MODEL, "device": device, "labelled": "false", "format": "npz"}
        response = self._api.download("/samples/export", params={**params, "since": str(since)})
        with np.load(io.BytesIO(response.content)) as archive:
            x, ids = archive["x"], archive["ids"]
        labels = []
        for sample_id, row in zip(ids, x, strict=True):
            label = truth.get(np.asarray(row, dtype="<f4").tobytes())
            if label is not None:
                labels.append({"id": int(sample_id), "label": label})
        if labels:
            self._call("POST", "/samples/labels", json={"labels": labels})
        return len(labels)

    def _finish(
        self, run: dict[str, Any], site_a: list[str], site_b: list[str], champion: int
    ) -> None:
        status = self._wait_rollout(run["rollout_id"])
        self.report.setdefault("rollouts", []).append(status)
        challenger = int(run["challenger_version"])
        self._wait(
            f"{GROUP_B} serving v{challenger}", lambda: self._serving(site_b, challenger), 60
        )
        if not self._serving(site_a, champion):
            raise DemoError(f"{GROUP_A}'s devices left the champion")
        time.sleep(2 * self.options.window_seconds)
        self._print_drift()
        rows = [r for host in self._sim.report() for r in host["devices"]]
        self.report["devices"] = {
            "total": len(rows),
            "connected": sum(r["connected"] for r in rows),
            "by_version": dict(Counter(f"v{r['version']}" for r in rows)),
            "rolled_back": sum(r["rolled_back"] for r in rows),
            "failed": sum(r["failed"] for r in rows),
            "inferences": sum(r["inferences"] for r in rows),
        }
        self.report["versions"] = {"champion": champion, "challenger": challenger}

    def _summary(self) -> str:
        devices = self.report["devices"]
        return (
            f"{devices['connected']}/{devices['total']} devices connected, by version "
            f"{devices['by_version']}, drift detected in {self.report['seconds_to_detect']} s, "
            f"whole demo {self.report['seconds_total']} s"
        )

    # -- stopping -----------------------------------------------------------------------------

    def stop(self) -> None:
        if self.fleet is not None:
            try:
                self.fleet.stop()
            except ServerError:
                self.fleet.kill()
            self.fleet = None
        if self.server is not None:
            self.server.send_signal(signal.SIGINT)
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()
            self.server = None
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
