"""The job runner: claims queued jobs and runs each in a worker process, never in the API.

One supervisor thread (started by the app's lifespan) claims jobs while it
has free slots (``EDGEFLEET_TRAINING_WORKERS``, 1 by default) and starts a
:func:`~edgefleet.server.training.worker.main` process for each with the
``spawn`` start method. It watches them: a worker that exits with its job
still ``running`` crashed, and the job is marked ``failed`` with the exit
code or signal; a worker that ignores a cancel for ``cancel_grace`` seconds
is terminated. At start, the ``running`` jobs this host's runner had
claimed are failed: the server process that ran their workers is gone.
Jobs are claimed by host name, so replicas on other hosts keep theirs; a
replica with no worker slots (API only) neither claims nor fails any.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from sqlalchemy.orm import Session, sessionmaker

from edgefleet.server.db.models import JobState
from edgefleet.server.settings import Settings
from edgefleet.server.training import jobs, worker
from edgefleet.server.training.worker import WorkerConfig

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0
STOP_SECONDS = 10.0


def exit_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "the worker process did not exit"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the worker process was killed by {name}"
    if exitcode > 0:
        return f"the worker process exited with code {exitcode}"
    return "the worker process exited without finishing the job"


@dataclass(slots=True)
class _Running:
    process: BaseProcess
    cancel_seen_at: float | None = None


class JobRunner:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        config: WorkerConfig,
        slots: int,
        clock: Callable[[], float] = time.time,
        cancel_grace: float = 30.0,
        poll_seconds: float = POLL_SECONDS,
        name: str | None = None,
    ) -> None:
        self.name = name or socket.gethostname()
        """How jobs record who runs them (the host, by default)."""
        self._sessions = sessions
        self._config = config
        self._slots = slots
        self._clock = clock
        self._cancel_grace = cancel_grace
        self._poll = poll_seconds
        self._context = multiprocessing.get_context("spawn")
        self._running: dict[int, _Running] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._slots == 0:  # an API-only replica: it runs no jobs and fails none
            return
        with self._sessions() as session:
            orphans = jobs.fail_orphans(
                session=session,
                now=self._clock(),
                reason="the server restarted while the job was running",
                runner=self.name,
            )
        if orphans:
            logger.warning("training jobs %s were running when the server stopped: failed", orphans)
        self._thread = threading.Thread(target=self._loop, name="training-runner", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A job was queued or cancelled: look now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_SECONDS + 5)
        for job_id, running in list(self._running.items()):
            running.process.terminate()
            running.process.join(STOP_SECONDS)
            if running.process.is_alive():
                running.process.kill()
                running.process.join()
            self._settle(job_id, "the server stopped while the job was running")
        self._running.clear()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - one bad tick (a DB hiccup) must not end the runner
                logger.exception("training runner tick failed; retrying")
            self._wake.wait(self._poll)
            self._wake.clear()

    def _tick(self) -> None:
        for job_id, running in list(self._running.items()):
            if not running.process.is_alive():
                running.process.join()
                del self._running[job_id]
                self._settle(job_id, exit_reason(running.process.exitcode))
            else:
                self._enforce_cancel(job_id, running)
        while len(self._running) < self._slots and not self._stopping.is_set():
            with self._sessions() as session:
                claimed = jobs.claim_next(session=session, now=self._clock(), runner=self.name)
            if claimed is None:
                return
            self._spawn(claimed)

    def _spawn(self, job_id: int) -> None:
        process = self._context.Process(
            target=worker.main,
            args=(self._config, job_id),
            name=f"edgefleet-training-{job_id}",
            daemon=True,
        )
        process.start()
        self._running[job_id] = _Running(process)
        with self._sessions() as session:
            jobs.set_worker(session=session, job_id=job_id, pid=process.pid)
        logger.info("training job %s started in process %s", job_id, process.pid)

    def _enforce_cancel(self, job_id: int, running: _Running) -> None:
        with self._sessions() as session:
            job = jobs.get_job(session=session, job_id=job_id)
            wanted, phase = job.cancel_requested, job.progress.get("phase")
        if not wanted or phase == "registering":  # registration is short and all-or-nothing
            return
        now = self._clock()
        if running.cancel_seen_at is None:
            running.cancel_seen_at = now
        elif now - running.cancel_seen_at > self._cancel_grace:
            logger.warning("training job %s ignores its cancel; terminating it", job_id)
            running.process.terminate()

    def _settle(self, job_id: int, reason: str) -> None:
        """After its worker is gone, a job still ``running`` ends failed (or cancelled)."""
        with self._sessions() as session:
            job = jobs.get_job(session=session, job_id=job_id)
            if job.state != JobState.RUNNING:
                return
            version = jobs.registered_version(session=session, job=job)
            if version is not None:
                state, error = JobState.SUCCEEDED, None
            elif job.cancel_requested:
                state, error = JobState.CANCELLED, f"cancelled on request ({reason})"
            else:
                state, error = JobState.FAILED, reason
            jobs.finish(
                session=session,
                job_id=job_id,
                state=state,
                now=self._clock(),
                error=error,
                model_version=None if version is None else version.version,
            )
            jobs.append_log(
                session=session, job_id=job_id, message=error or reason, now=self._clock()
            )
        logger.warning("training job %s: %s", job_id, reason)


def from_settings(
    settings: Settings, sessions: sessionmaker[Session], clock: Callable[[], float]
) -> JobRunner:
    """The runner the app's lifespan starts, configured by ``EDGEFLEET_TRAINING_*``."""
    config = WorkerConfig(
        database_url=settings.effective_database_url,
        artifact_dir=settings.artifact_dir.resolve(),
        signing_dir=settings.effective_signing_dir.resolve(),
        profiles_dir=settings.profiles_dir.resolve(),
        threads=settings.training_threads,
    )
    return JobRunner(
        sessions=sessions,
        config=config,
        slots=settings.training_workers,
        clock=clock,
        cancel_grace=settings.training_cancel_grace_seconds,
    )
