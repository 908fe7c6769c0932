"""Stage contract, stage registry and the observing runner that turns every outcome into a verdict."""

from __future__ import annotations

import importlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from . import metrics
from .errors import HL7_ERROR_TEXT, Drop, Problem, Reject, Retry
from .exchange import Exchange, Outcome

log = structlog.get_logger("radsched.pipeline")


class Stage(Protocol):
    """A configured stage: set up once in ``__init__``, then called once per message.

    A transactional stage may also have ``prepare(exchange) -> None``: the part of its work that
    needs neither the database nor anything an earlier stage does in the transaction, run in
    stage order just before the message joins the unit of work (so a group-commit batch does
    not hold its transaction open while it is done). It leaves its results in
    ``exchange.data`` for the stage's call, must not raise for bad input (it prepares nothing
    and lets the call answer) and must stay valid if the call is run again after a rollback.

    Any stage may have ``async start() -> None``, awaited once (``Pipeline.start``) before its
    channel's listener takes messages: set-up that needs the database.
    """

    async def __call__(self, exchange: Exchange) -> None: ...


@dataclass(slots=True)
class Resources:
    """What the composition root hands to stage constructors (stages never build clients)."""

    channel: str                     # channel name
    settings: Any                    # the channel's config object (facility zone, ack settings, ...)
    store: Any = None                # the Store (database access), or None without persistence
    outbox: Any = None               # the durable outbox (side effects after commit)
    services: dict[str, Any] = field(default_factory=dict)   # optional clients: "claude", ...


@dataclass(frozen=True, slots=True)
class StageSpec:
    """A stage's name, docs, options schema and constructor, registered once by its module."""

    name: str
    summary: str
    options: type                    # a frozen dataclass; its fields are the YAML options
    factory: Callable[[Any, Resources], Stage]
    example: str = ""                # a YAML example, shown by ``radsched-engine stages``
    transactional: bool = False      # runs inside the unit of work (the persist transaction)
    after: tuple[str, ...] = ()      # stages that must come earlier in the pipeline (lint checks)


_REGISTRY: dict[str, StageSpec] = {}
STAGE_MODULES = (
    "radsched_engine.stages.parse",
    "radsched_engine.stages.validate",
    "radsched_engine.stages.conflict_check",
    "radsched_engine.stages.persist",
    "radsched_engine.stages.notify",
)


def register(spec: StageSpec) -> StageSpec:
    """Pair a stage's name with its spec; called once at import time by each stage module."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"stage {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def registry() -> dict[str, StageSpec]:
    """All known stages, by name (imports the stage modules on first use)."""
    for module in STAGE_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return dict(_REGISTRY)


class UnitOfWork(Protocol):
    """The transaction around the transactional stages, and the journal of every message."""

    async def run(self, exchange: Exchange, body: Callable[[Exchange], Awaitable[None]]) -> None:
        """Run ``body`` (the transactional stages) with ``exchange.tx`` set, journal and commit.

        Same contract as ``transaction``, except that the unit of work may run several waiting
        exchanges' bodies in one transaction and commit them together (group commit); it may
        also run a body again from the state it had before (after rolling its effects back), so
        bodies keep their state in the exchange. Returns only after the commit; raises when
        nothing could be committed.
        """
        ...

    def transaction(self, exchange: Exchange) -> AbstractAsyncContextManager[None]:
        """Open a transaction (``exchange.tx``); on exit journal the outcome and commit.

        Effects of a message whose outcome is not accepted are rolled back, but its journal
        row is still committed. Raises when the commit fails (the runner answers AR 207).
        """
        ...

    async def record(self, exchange: Exchange) -> None:
        """Journal a message whose outcome was decided before any transaction was opened."""
        ...


@dataclass(slots=True)
class Step:
    name: str
    stage: Stage
    duration: Any                    # histogram child for (channel, stage)
    prepare: Callable[[Exchange], None] | None = None


PREPARED_SECONDS = "prepared_seconds"    # exchange.data: stage name -> seconds its prepare took


class Pipeline:
    """Runs a channel's stages in order, observing each, and decides the message's outcome.

    This is the one place with a broad ``except``: a stage signals expected outcomes with
    ``Reject`` / ``Retry`` / ``Drop``, and any other exception becomes AR 207 with a logged
    traceback. ``run`` never raises except for cancellation.
    """

    def __init__(
        self, channel: str, steps: list[tuple[StageSpec, Stage]],
        unit_of_work: UnitOfWork | None = None,
    ) -> None:
        self.channel = channel
        self.unit_of_work = unit_of_work
        first_tx = next((i for i, (s, _) in enumerate(steps) if s.transactional), len(steps))
        self._plain = [self._step(spec, stage) for spec, stage in steps[:first_tx]]
        self._transactional = [self._step(spec, stage) for spec, stage in steps[first_tx:]]
        if self._transactional and unit_of_work is None:
            raise ValueError(f"channel {channel!r}: transactional stages need a unit of work")
        names = [spec.name for spec, _ in steps]
        for _, stage in steps:         # optional hook: a stage that works with a later one
            bind = getattr(stage, "bind_pipeline", None)
            if bind is not None:
                bind(names)

    def _step(self, spec: StageSpec, stage: Stage) -> Step:
        return Step(spec.name, stage, metrics.STAGE_SECONDS.labels(self.channel, spec.name),
                    getattr(stage, "prepare", None) if spec.transactional else None)

    async def start(self) -> None:
        """Await each stage's optional ``start()`` hook, in order, before the channel takes
        messages (e.g. notify stores its channel's settings once)."""
        for step in self._plain + self._transactional:
            hook = getattr(step.stage, "start", None)
            if hook is not None:
                await hook()

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self._plain + self._transactional]

    async def run(self, exchange: Exchange) -> None:
        """Process one message; afterwards ``exchange.outcome`` (and ``problem``) are set."""
        await self._run_steps(self._plain, exchange)
        if exchange.outcome is None and self._transactional:
            self._prepare(exchange)           # (never raises: a failure is the outcome)
        uow = self.unit_of_work
        try:
            if exchange.outcome is None and self._transactional:
                assert uow is not None
                run = getattr(uow, "run", None)
                if run is not None:
                    await run(exchange, self._transaction_body)
                else:
                    async with uow.transaction(exchange):
                        await self._run_steps(self._transactional, exchange)
            elif uow is not None:
                await uow.record(exchange)
        except Exception as exc:   # the commit or the journal failed: nothing was taken
            # A unit of work may report a database outage itself, once (``refused``): then
            # each message's failure is detail (debug), not an error line per message.
            refused = getattr(uow, "refused", None)
            (log.debug if refused is not None and refused(exc) else log.error)(
                "commit_failed", channel=self.channel, control_id=exchange.control_id,
                error=type(exc).__name__, detail=str(exc)[:200])
            metrics.COMMIT_FAILURES.labels(self.channel).inc()
            exchange.outcome = Outcome.RETRY
            exchange.problem = Problem(207, f"message not stored: {type(exc).__name__}")
            exchange.user_text = "The message could not be stored; resend it later."
        if exchange.outcome is None:
            exchange.outcome = Outcome.ACCEPTED

    def _prepare(self, exchange: Exchange) -> None:
        """The transactional stages' ``prepare`` hooks, in order, before the transaction."""
        seconds: dict[str, float] = {}
        for step in self._transactional:
            if step.prepare is None:
                continue
            started = time.perf_counter()
            try:
                step.prepare(exchange)
            except Exception as exc:       # a bug: answered as a failing stage would be
                log.exception("stage_failed", channel=self.channel, stage=step.name,
                              control_id=exchange.control_id, error=type(exc).__name__)
                exchange.outcome = Outcome.ERROR
                exchange.problem = Problem(
                    207, f"{HL7_ERROR_TEXT[207]} in stage {step.name}: {type(exc).__name__}")
                metrics.STAGE_OUTCOMES.labels(self.channel, step.name, exchange.outcome.value).inc()
                return
            finally:
                seconds[step.name] = time.perf_counter() - started
        if seconds:
            exchange.data[PREPARED_SECONDS] = seconds

    async def _transaction_body(self, exchange: Exchange) -> None:
        await self._run_steps(self._transactional, exchange)

    async def _run_steps(self, steps: list[Step], exchange: Exchange) -> None:
        prepared = exchange.data.get(PREPARED_SECONDS) or {}
        for step in steps:
            if exchange.outcome is not None:
                return
            started = time.perf_counter()
            try:
                await step.stage(exchange)
            except Drop as signal:
                exchange.outcome = (
                    Outcome.DUPLICATE if signal.reason == "duplicate" else Outcome.FILTERED
                )
            except Reject as signal:
                exchange.outcome = Outcome.REJECTED
                exchange.problem = signal.problem
                exchange.user_text = signal.user_text
            except Retry as signal:
                exchange.outcome = Outcome.RETRY
                exchange.problem = signal.problem
                exchange.user_text = signal.user_text
            except Exception as exc:
                log.exception("stage_failed", channel=self.channel, stage=step.name,
                              control_id=exchange.control_id, error=type(exc).__name__)
                exchange.outcome = Outcome.ERROR
                exchange.problem = Problem(
                    207, f"{HL7_ERROR_TEXT[207]} in stage {step.name}: {type(exc).__name__}")
            finally:
                step.duration.observe(time.perf_counter() - started + prepared.get(step.name, 0.0))
            if exchange.outcome is not None:
                metrics.STAGE_OUTCOMES.labels(self.channel, step.name, exchange.outcome.value).inc()


Handler = Callable[[bytes, str], Awaitable[bytes]]
