"""The shell around the update machine: messages and files in, transitions and events out.

Everything here runs on the agent's own thread. A ``desired`` is verified
with :func:`edgefleet.shared.admission.admit` (key list, root rotations and
manifest first) before a single chunk is fetched; every transition is
persisted, then reported, then acted on (see :mod:`.machine`), and an action
that fails turns into the next signal rather than an exception. Refusals
carry the shared error's ``reason`` slug first: ``"bad_signature: ..."``.

What a ``desired`` asks for is decided in :mod:`.intake`; the chunk
subscriptions and the download's own signals (progress, resume, deadline,
refetch of an artifact that did not verify) live in :mod:`.fetcher`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from edgefleet.agent.errors import AgentError, StorageError, UpdateStateError
from edgefleet.agent.inference import InferenceCounters, InferenceService
from edgefleet.agent.runtime import ModelRunner
from edgefleet.agent.storage import Storage
from edgefleet.agent.update.fetcher import Fetcher, Subscriptions
from edgefleet.agent.update.intake import Intake
from edgefleet.agent.update.machine import (
    Action,
    Activate,
    Discard,
    Fail,
    Fetch,
    Keep,
    Point,
    RollBack,
    RunSelfTest,
    SelfTestPassed,
    SelfTestStarted,
    Shadow,
    ShadowReported,
    Signal,
    Stage,
    Staged,
    StopFetch,
    StopShadow,
    step,
)
from edgefleet.agent.update.probation import Decision, ModelStats, judge
from edgefleet.agent.update.recovery import recover
from edgefleet.agent.update.state import Candidate, UpdateState, reason_of
from edgefleet.shared.errors import EdgefleetError
from edgefleet.shared.manifest import Manifest
from edgefleet.shared.messages import (
    Desired,
    Event,
    ModelSlot,
    Slot,
    UpdatePhase,
    UpdateProgress,
)

log = logging.getLogger(__name__)

RunnerLoader = Callable[[Path, Manifest], ModelRunner]
PhaseHook = Callable[[UpdatePhase], None]


class Updater:
    def __init__(
        self,
        *,
        storage: Storage,
        serving: InferenceService,
        load_runner: RunnerLoader,
        subscriptions: Subscriptions,
        emit: Callable[[Event], None],
        intake: Intake,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_phase: PhaseHook | None = None,
    ) -> None:
        self._storage = storage
        self._serving = serving
        self._load = load_runner
        self._emit = emit
        self._intake = intake
        self._rules = intake.facts.rules
        self._clock = clock
        self._on_phase = on_phase or (lambda _phase: None)
        self._state = UpdateState()
        self._serving_slot: Slot | None = None
        self._fetcher = Fetcher(
            subscriptions, monotonic=monotonic, timeout=self._rules.download_timeout_seconds
        )
        self._candidate_runner: ModelRunner | None = None
        self._previous_stats: ModelStats | None = None
        self._stale_runner = False
        self._pending: Desired | None = None

    # -- reading -----------------------------------------------------------------------

    @property
    def state(self) -> UpdateState:
        return self._state

    @property
    def serving_slot(self) -> Slot | None:
        return self._serving_slot

    def models(self) -> tuple[ModelSlot, ...]:
        """The installed models for the retained ``state`` message."""
        out = []
        for slot in Slot:
            record = self._storage.record(slot)
            if record is None or not record.tested:
                continue
            manifest = record.parsed()
            out.append(
                ModelSlot(
                    model=manifest.model,
                    version=manifest.version,
                    sha256=manifest.artifact.sha256,
                    slot=slot,
                    active=slot is self._serving_slot,
                )
            )
        return tuple(out)

    def progress(self) -> UpdateProgress | None:
        candidate = self._state.candidate
        if candidate is None:
            return None
        return UpdateProgress(candidate.model, candidate.version, self._state.phase)

    # -- boot ---------------------------------------------------------------------------

    def boot(self) -> None:
        """Judge what a crash (or a clean stop) left, serve a fit slot, and go on."""
        try:
            state = self._storage.read_update_state()
        except UpdateStateError as err:
            log.error("%s; starting at rest with the active pointer", err)  # noqa: TRY400
            state = UpdateState()
        self._state = state
        recovery = recover(state, self._storage.view(), now=self._clock())
        try:
            self._serve(recovery.boot)
        except AgentError as err:
            log.error("cannot serve the fit slot: %s; serving nothing", err)  # noqa: TRY400
        log.info(
            "booted: serving slot %s, update %s",
            recovery.boot.value if recovery.boot else "none",
            state.phase.value,
        )
        if recovery.step.state != state or recovery.step.events or recovery.step.actions:
            follow = self._run(recovery.step.state, recovery.step.events, recovery.step.actions)
            if follow is not None:
                self._drive(follow)

    # -- inputs -------------------------------------------------------------------------

    def on_desired(self, desired: Desired) -> None:
        if self._state.revision is not None and desired.revision <= self._state.revision:
            log.debug("desired revision %d already handled", desired.revision)
            return
        if not self._state.resting:
            log.info("desired revision %d waits for the update in flight", desired.revision)
            self._pending = desired
            return
        for signal in self._intake.decide(desired, active=self._serving_slot, now=self._clock()):
            self._drive(signal)

    def on_chunk(self, sha256: str, index: int, data: bytes) -> None:
        signal = self._fetcher.on_chunk(sha256, index, data)
        if signal is not None:
            self._drive(signal)

    def tick(self) -> None:
        """Time-driven work: download stalls and deadline, shadow report, probation."""
        phase = self._state.phase
        if phase is UpdatePhase.DOWNLOADING:
            due = self._fetcher.due()
            if due is not None:
                self._drive(due)
        elif self._state.shadowing:
            self._shadow_due()
        elif phase is UpdatePhase.ACTIVE:
            self._probation_due()
        if self._state.resting and self._pending is not None:
            pending, self._pending = self._pending, None
            self.on_desired(pending)

    # -- driving the machine ------------------------------------------------------------------

    def _drive(self, signal: Signal) -> None:
        """Run ``signal`` and whatever its actions lead to, one transition at a time."""
        next_signal: Signal | None = signal
        while next_signal is not None:
            current, next_signal = next_signal, None
            try:
                result = step(self._state, current, now=self._clock())
            except UpdateStateError:
                log.exception("update machine refused %s; nothing done", current)
                return
            next_signal = self._run(result.state, result.events, result.actions, current)

    def _run(
        self,
        state: UpdateState,
        events: tuple[Event, ...],
        actions: tuple[Action, ...],
        cause: Signal | None = None,
    ) -> Signal | None:
        entered = state.phase is not self._state.phase
        self._state = state
        try:
            self._storage.write_update_state(state)
        except StorageError as err:
            log.error("cannot persist the update state: %s", err)  # noqa: TRY400
            if not isinstance(cause, Fail | RollBack):
                return Fail(reason_of(err))
        for event in events:
            self._emit(event)
        if entered and state.phase is not UpdatePhase.ACTIVE:
            self._on_phase(state.phase)
        for action in actions:
            follow = self._perform(action)
            if follow is not None:
                return follow
        return None

    def _perform(self, action: Action) -> Signal | None:
        try:
            return self._act(action)
        except (AgentError, EdgefleetError) as err:
            log.warning("%s failed: %s", type(action).__name__, err)
            if isinstance(action, Point):
                self._stop_serving()  # nothing fit to fall back to: serve nothing
                return None
            if isinstance(action, Discard | StopShadow | StopFetch):
                return None  # cleanup: what is left behind is inactive and harmless
            return Fail(reason_of(err))

    def _act(self, action: Action) -> Signal | None:
        if isinstance(action, Fetch):
            return self._fetch(action.candidate)
        if isinstance(action, StopFetch):
            self._fetcher.stop()
        elif isinstance(action, Stage):
            return self._stage(action.candidate)
        elif isinstance(action, RunSelfTest):
            return self._self_test(action.candidate)
        elif isinstance(action, Shadow):
            self._serving.set_shadow(self._candidate_runner)
        elif isinstance(action, StopShadow):
            self._serving.set_shadow(None)
        elif isinstance(action, Activate):
            self._activate(action.candidate)
        elif isinstance(action, Point):
            self._serve(action.slot)
        elif isinstance(action, Discard):
            self._candidate_runner = None
            self._storage.discard(action.slot)
        return None

    # -- actions --------------------------------------------------------------------------------

    def _fetch(self, candidate: Candidate) -> Signal | None:
        admission = self._intake.admit(candidate.manifest, self._clock())
        self._fetcher.start(admission.manifest)
        return None

    def _stage(self, candidate: Candidate) -> Signal:
        data = self._fetcher.stop()
        if data is None:
            return Fail("download_lost: no verified artifact to stage")
        admission = self._intake.admit(candidate.manifest, self._clock())
        self._storage.stage(candidate.slot, admission, candidate.manifest, data)
        return Staged()

    def _self_test(self, candidate: Candidate) -> Signal | None:
        follow = self._run_nested(SelfTestStarted())
        if follow is not None:
            return follow
        admission = self._intake.admit(candidate.manifest, self._clock())
        runner = self._load(self._storage.model_path(candidate.slot), admission.manifest)
        runner.run_self_test()
        self._storage.mark_tested(candidate.slot)
        self._candidate_runner = runner
        return SelfTestPassed()

    def _run_nested(self, signal: Signal) -> Signal | None:
        """A transition an action makes before its own work (persisted, hooked, reported)."""
        result = step(self._state, signal, now=self._clock())
        return self._run(result.state, result.events, result.actions, signal)

    def _activate(self, candidate: Candidate) -> None:
        manifest = Manifest.from_signed(candidate.manifest.signed)
        runner = self._candidate_runner or self._load(
            self._storage.model_path(candidate.slot), manifest
        )
        self._intake.record(manifest)
        self._storage.set_pointer(candidate.slot)
        replaced = self._serving.activate(runner, slot=candidate.slot)
        self._previous_stats = _stats(replaced) if self._serving_slot is not None else None
        self._serving_slot = candidate.slot
        self._candidate_runner = None
        self._on_phase(UpdatePhase.ACTIVE)

    def _serve(self, slot: Slot | None) -> None:
        """Serve ``slot`` (its bytes are re-checked as it loads); ``None``: serve nothing."""
        if slot is self._serving_slot:
            return
        if slot is None:
            self._storage.set_pointer(None)
            self._stop_serving()
            return
        record = self._storage.record(slot)
        if record is None:
            raise StorageError(f"slot {slot.value} holds no model", reason="slot_empty")
        runner = self._load(self._storage.model_path(slot), record.parsed())
        if self._storage.pointer() is not slot:
            self._storage.set_pointer(slot)
        self._serving.activate(runner, slot=slot)
        self._serving_slot = slot

    def _stop_serving(self) -> None:
        """Stop serving without a model to switch to.

        The inference service has no way to unload its model, so the agent
        asks to be restarted (:attr:`needs_restart`): it boots serving nothing.
        """
        if self._serving_slot is not None:
            log.warning("no model left to serve; the agent restarts to unload the rolled-back one")
            self._stale_runner = True
        self._serving_slot = None

    @property
    def needs_restart(self) -> bool:
        """True when a model that must not serve is still loaded (see :meth:`_stop_serving`)."""
        return self._stale_runner

    def _shadow_due(self) -> None:
        summary = self._serving.shadow_report().summary()
        if summary is not None and summary.samples >= self._rules.shadow_samples:
            self._drive(ShadowReported(summary))

    def _probation_due(self) -> None:
        verdict = judge(
            candidate=_stats(self._serving.counters()),
            previous=self._previous_stats,
            elapsed=self._clock() - self._state.since,
            rules=self._rules,
        )
        if verdict.decision is Decision.KEEP:
            self._drive(Keep(verdict.reason))
        elif verdict.decision is Decision.ROLL_BACK:
            self._drive(RollBack(verdict.reason))


def _stats(counters: InferenceCounters) -> ModelStats:
    return ModelStats(counters.inferences, counters.errors, counters.p95_ms)
