"""A circuit breaker for async calls, with its state in a pluggable store (memory or Redis).

Closed: calls go through; `failure_threshold` failures within `window_seconds` open the circuit.
Open: calls fail fast with `CircuitOpenError` (no call reaches the provider) until
`recovery_seconds` have passed. Half-open: up to `half_open_max_calls` trial calls go through at
once; a trial success closes the circuit, a trial failure opens it again.

Why our own: no maintained asyncio breaker shares its state across processes. pybreaker does not
count failures of async functions, aiobreaker is abandoned and its Redis storage blocks the event
loop, `circuitbreaker` keeps state per process, and purgatory's redis extra pins redis<6.

The rules below (`admit`, `settle`) are pure functions over a `BreakerRecord`. The memory store
applies them directly; the Redis store runs the same rules as a Lua script, so that each decision
is atomic across workers. The tests run every scenario against both, which keeps the twins equal.
States change lazily: an open circuit becomes half-open on the first call after recovery.

An open circuit found in the store is remembered by the process for up to
`remember_open_seconds` (never past its recovery time): during an outage every refused request
would otherwise cost a store round trip, a Lua script on Redis, to learn what the process
already knows. The price is that an operator reset served by another worker reaches this one up
to that long later. Half-open refusals are not remembered: a trial may close the circuit any
moment, and the other workers should see it at once.
"""

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar

import anyio

from app.core.exceptions import CircuitOpenError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(StrEnum):
    """How an admitted call ended. `ABANDONED` (cancelled) is no verdict on the provider."""

    SUCCESS = "success"
    FAILURE = "failure"
    ABANDONED = "abandoned"


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int
    recovery_seconds: float
    window_seconds: float
    half_open_max_calls: int = 1

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.half_open_max_calls < 1:
            raise ValueError("failure_threshold and half_open_max_calls must be at least 1")
        if self.recovery_seconds <= 0 or self.window_seconds <= 0:
            raise ValueError("recovery_seconds and window_seconds must be positive")


@dataclass
class BreakerRecord:
    """One breaker's stored state: the fields of its Redis hash."""

    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    window_start: float = 0.0
    opened_at: float | None = None
    half_open_in_flight: int = 0
    # When the latest trial started. A worker that dies mid-trial never settles it; without this
    # lease its slot would stay taken and the circuit would stay half-open for ever.
    trial_started_at: float | None = None


def admit(record: BreakerRecord, now: float, policy: BreakerPolicy) -> tuple[bool, bool]:
    """May a call proceed now? Returns (admitted, as_trial) and updates `record`."""
    if record.state is BreakerState.OPEN:
        assert record.opened_at is not None
        if now < record.opened_at + policy.recovery_seconds:
            return False, False
        record.state = BreakerState.HALF_OPEN
        record.half_open_in_flight = 0
    if record.state is BreakerState.HALF_OPEN:
        started = record.trial_started_at
        if started is not None and now >= started + policy.recovery_seconds:
            record.half_open_in_flight = 0  # the trials in flight are presumed lost
        if record.half_open_in_flight >= policy.half_open_max_calls:
            return False, False
        record.half_open_in_flight += 1
        record.trial_started_at = now
        return True, True
    return True, False


def settle(
    record: BreakerRecord, outcome: Outcome, now: float, policy: BreakerPolicy, *, trial: bool
) -> None:
    """Record how an admitted call ended, updating `record`."""
    if record.state is BreakerState.HALF_OPEN:
        # Only trials decide: a call admitted before the circuit opened says nothing about now.
        if not trial:
            return
        if outcome is Outcome.SUCCESS:
            _close(record)
        elif outcome is Outcome.FAILURE:
            _open(record, now)
        else:
            record.half_open_in_flight = max(0, record.half_open_in_flight - 1)
    elif record.state is BreakerState.CLOSED:
        if outcome is Outcome.SUCCESS:
            record.failures = 0
        elif outcome is Outcome.FAILURE:
            failures = failures_in_window(record, now, policy)
            if failures == 0:
                record.window_start = now
            record.failures = failures + 1
            if record.failures >= policy.failure_threshold:
                _open(record, now)
    # Open: late results of calls admitted before the circuit opened change nothing.


def failures_in_window(record: BreakerRecord, now: float, policy: BreakerPolicy) -> int:
    """The failures still counting. The window starts at the first failure and lasts
    `window_seconds`: an approximation of a sliding window that needs two fields, not a list."""
    return record.failures if now - record.window_start < policy.window_seconds else 0


def next_trial_at(record: BreakerRecord, policy: BreakerPolicy) -> float | None:
    """When a trial call may next go through; None while closed (no trial needed)."""
    if record.state is BreakerState.CLOSED or record.opened_at is None:
        return None
    full = record.half_open_in_flight >= policy.half_open_max_calls
    if record.state is BreakerState.HALF_OPEN and full and record.trial_started_at is not None:
        return record.trial_started_at + policy.recovery_seconds  # when the trials' lease ends
    return record.opened_at + policy.recovery_seconds


def _open(record: BreakerRecord, now: float) -> None:
    record.state = BreakerState.OPEN
    record.opened_at = now
    record.half_open_in_flight = 0
    record.trial_started_at = None


def _close(record: BreakerRecord) -> None:
    record.state = BreakerState.CLOSED
    record.failures = 0
    record.opened_at = None
    record.half_open_in_flight = 0
    record.trial_started_at = None


@dataclass(frozen=True)
class StoreResult:
    """What a store operation found (`previous` state) and left (`record`)."""

    previous: BreakerState
    record: BreakerRecord
    admitted: bool = False
    trial: bool = False


class BreakerStore(Protocol):
    """Where breaker state lives. Each method is atomic for the processes sharing the store."""

    async def admit(self, name: str, now: float, policy: BreakerPolicy) -> StoreResult: ...

    async def settle(
        self, name: str, outcome: Outcome, now: float, policy: BreakerPolicy, *, trial: bool
    ) -> StoreResult: ...

    async def load(self, name: str) -> BreakerRecord: ...

    async def reset(self, name: str) -> StoreResult: ...


@dataclass(frozen=True)
class BreakerSnapshot:
    name: str
    state: BreakerState
    failure_count: int
    opened_at: float | None
    next_trial_at: float | None


def _every_exception(exc: BaseException) -> bool:
    return isinstance(exc, Exception)


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        store: BreakerStore,
        *,
        failure_threshold: int,
        recovery_seconds: float,
        window_seconds: float,
        half_open_max_calls: int = 1,
        # Wall time, not monotonic: the state is shared with other processes and hosts.
        clock: Callable[[], float] = time.time,
        is_failure: Callable[[BaseException], bool] = _every_exception,
        on_transition: Callable[[str, BreakerState, BreakerState], None] | None = None,
        remember_open_seconds: float = 1.0,
    ) -> None:
        self.name = name
        self.policy = BreakerPolicy(
            failure_threshold, recovery_seconds, window_seconds, half_open_max_calls
        )
        self._store = store
        self._clock = clock
        self._is_failure = is_failure
        self._on_transition = on_transition
        self._remember_open_seconds = remember_open_seconds
        self._known_open_until = 0.0  # refuse without asking the store until then
        self._known_trial_at = 0.0

    def known_open_until(self) -> float | None:
        """Until when this process knows the circuit open, refusing calls without asking the
        store (None: it does not know it open now). The value names that remembered period: a
        caller may skip, until it changes, what it learnt is only worth doing for a call."""
        return self._known_open_until if self._clock() < self._known_open_until else None

    def refusal(self) -> CircuitOpenError | None:
        """The error a call would be refused with now, without asking the store; None when a
        call would ask it. What `guard` raises on entry, for a caller that need not enter."""
        now = self._clock()
        if now < self._known_open_until:
            return self._open_error(self._known_trial_at, now)
        return None

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await `fn()` unless the circuit is open; its exceptions propagate unchanged."""
        async with self.guard():
            return await fn()

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """The body runs as one call: refused with CircuitOpenError on entry while the circuit
        is open, and settled by how it exits. A streamed answer is one such call, from the
        request to its last token."""
        if (refused := self.refusal()) is not None:
            raise refused
        now = self._clock()
        ticket = await self._store.admit(self.name, now, self.policy)
        self._report(ticket)
        if not ticket.admitted:
            trial_at = next_trial_at(ticket.record, self.policy)
            if ticket.record.state is BreakerState.OPEN and trial_at is not None:
                self._known_trial_at = trial_at
                self._known_open_until = min(trial_at, now + self._remember_open_seconds)
            raise self._open_error(trial_at, now)
        try:
            yield
        except Exception as exc:
            # An exception that is not a failure (the caller's mistake, say) means the provider
            # answered, so it counts as a success, as in pybreaker.
            failed = self._is_failure(exc)
            await self._settle(Outcome.FAILURE if failed else Outcome.SUCCESS, ticket.trial)
            raise
        except BaseException:
            # Cancelled, or a stream closed by its consumer: no verdict on the provider, but a
            # trial frees its slot for another. Shielded, as a cancelled stream's cleanup is
            # cancelled again at each await until it leaves the cancelled scope.
            if ticket.trial:
                with anyio.CancelScope(shield=True):
                    await self._settle(Outcome.ABANDONED, trial=True)
            raise
        # A success changes the record only if it ends a trial or clears counted failures: a
        # closed circuit that counted none at admission is left alone, which saves most calls
        # a store round trip (a failure counted meanwhile by another call stays counted).
        if ticket.trial or failures_in_window(ticket.record, now, self.policy):
            await self._settle(Outcome.SUCCESS, ticket.trial)

    def _open_error(self, trial_at: float | None, now: float) -> CircuitOpenError:
        return CircuitOpenError(
            f"Circuit '{self.name}' is open",
            details={"breaker": self.name},
            retry_after_seconds=0.0 if trial_at is None else max(0.0, trial_at - now),
        )

    async def snapshot(self) -> BreakerSnapshot:
        record = await self._store.load(self.name)
        failures = record.failures
        if record.state is BreakerState.CLOSED:
            failures = failures_in_window(record, self._clock(), self.policy)
        return BreakerSnapshot(
            name=self.name,
            state=record.state,
            failure_count=failures,
            opened_at=record.opened_at,
            next_trial_at=next_trial_at(record, self.policy),
        )

    async def reset(self) -> None:
        """Operator reset: closed, with no failures counted."""
        self._known_open_until = 0.0
        self._report(await self._store.reset(self.name))

    async def _settle(self, outcome: Outcome, trial: bool) -> None:
        result = await self._store.settle(
            self.name, outcome, self._clock(), self.policy, trial=trial
        )
        self._report(result)

    def _report(self, result: StoreResult) -> None:
        # Only the process whose store call changed the state reports it, so metrics summed over
        # workers count each transition once.
        before, after = result.previous, result.record.state
        if before is after:
            return
        logger.info("Circuit breaker %s: %s -> %s", self.name, before, after)
        if self._on_transition is not None:
            try:
                self._on_transition(self.name, before, after)
            except Exception:  # a broken metrics hook must not fail calls or hide their errors
                logger.exception("on_transition hook failed for breaker %s", self.name)
