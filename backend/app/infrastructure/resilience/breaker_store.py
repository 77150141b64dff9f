"""Where circuit-breaker state lives: in this process, or in Redis for every worker at once.

`RedisBreakerStore` keeps one hash per breaker and changes it only through one Lua script, the twin
of `breaker.admit` and `breaker.settle`: Redis runs a script without interleaving other commands,
so "may this call proceed?" and "record this outcome" are each atomic across processes (a
read-modify-write from Python could let two workers both take the single half-open trial).
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from app.infrastructure.redis_client import REDIS_ERRORS, RedisAvailability
from app.infrastructure.resilience import breaker
from app.infrastructure.resilience.breaker import (
    BreakerPolicy,
    BreakerRecord,
    BreakerState,
    Outcome,
    StoreResult,
)

R = TypeVar("R")


class MemoryBreakerStore:
    """State for this process only. No method awaits, so each is atomic within the event loop."""

    def __init__(self) -> None:
        self._records: dict[str, BreakerRecord] = {}

    async def admit(self, name: str, now: float, policy: BreakerPolicy) -> StoreResult:
        record = self._records.setdefault(name, BreakerRecord())
        previous = record.state
        admitted, trial = breaker.admit(record, now, policy)
        return StoreResult(previous, replace(record), admitted, trial)

    async def settle(
        self, name: str, outcome: Outcome, now: float, policy: BreakerPolicy, *, trial: bool
    ) -> StoreResult:
        record = self._records.setdefault(name, BreakerRecord())
        previous = record.state
        breaker.settle(record, outcome, now, policy, trial=trial)
        return StoreResult(previous, replace(record))

    async def load(self, name: str) -> BreakerRecord:
        return replace(self._records.get(name, BreakerRecord()))

    async def reset(self, name: str) -> StoreResult:
        previous = self._records.pop(name, BreakerRecord()).state
        return StoreResult(previous, BreakerRecord())


_FIELDS = (
    "state",
    "failures",
    "window_start",
    "opened_at",
    "half_open_in_flight",
    "trial_started_at",
)

# KEYS[1]: the breaker's hash. ARGV: operation (admit, success, failure, abandoned), now,
# failure_threshold, recovery_seconds, window_seconds, half_open_max_calls, trial ("1" or "0").
# Times are stored as the strings Python sent: Lua would print numbers with 14 digits only.
# Returns the state found, admitted (0/1), as_trial (0/1), then the hash's fields in _FIELDS order.
_STATE_MACHINE_LUA = """
local key, op, now_text = KEYS[1], ARGV[1], ARGV[2]
local now, threshold, recovery = tonumber(now_text), tonumber(ARGV[3]), tonumber(ARGV[4])
local window, max_calls, trial = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7] == '1'
local function get(field)
  local value = redis.call('HGET', key, field)
  if value then return tonumber(value) end
  return nil
end
local function open()
  redis.call('HSET', key, 'state', 'open', 'opened_at', now_text, 'half_open_in_flight', 0)
  redis.call('HDEL', key, 'trial_started_at')
end
local state = redis.call('HGET', key, 'state') or 'closed'
local previous, admitted, as_trial = state, 0, 0

if op == 'admit' then
  if state == 'open' and now >= (get('opened_at') or 0) + recovery then
    state = 'half_open'
    redis.call('HSET', key, 'state', state, 'half_open_in_flight', 0)
  end
  if state == 'half_open' then
    local in_flight = get('half_open_in_flight') or 0
    local started = get('trial_started_at')
    if started and now >= started + recovery then in_flight = 0 end
    if in_flight < max_calls then
      redis.call('HSET', key, 'half_open_in_flight', in_flight + 1, 'trial_started_at', now_text)
      admitted, as_trial = 1, 1
    end
  elseif state == 'closed' then
    admitted = 1
  end
elseif state == 'half_open' and trial then
  if op == 'success' then
    redis.call('HSET', key, 'state', 'closed', 'failures', 0, 'half_open_in_flight', 0)
    redis.call('HDEL', key, 'opened_at', 'trial_started_at')
  elseif op == 'failure' then
    open()
  else
    local in_flight = math.max(0, (get('half_open_in_flight') or 0) - 1)
    redis.call('HSET', key, 'half_open_in_flight', in_flight)
  end
elseif state == 'closed' then
  local failures = get('failures') or 0
  if op == 'success' and failures > 0 then
    redis.call('HSET', key, 'failures', 0)
  elseif op == 'failure' then
    if now - (get('window_start') or 0) >= window then failures = 0 end
    if failures == 0 then redis.call('HSET', key, 'window_start', now_text) end
    failures = failures + 1
    redis.call('HSET', key, 'state', 'closed', 'failures', failures)
    if failures >= threshold then open() end
  end
end

local record = redis.call('HMGET', key, 'state', 'failures', 'window_start', 'opened_at',
  'half_open_in_flight', 'trial_started_at')
return {previous, admitted, as_trial, unpack(record)}
"""


class RedisBreakerStore:
    """State shared by every process using the same Redis, atomic per operation.

    While the process's `RedisAvailability` holds Redis down, each operation falls back to a
    per-process memory store: the breaker keeps protecting the provider from this worker while
    Redis is down, rather than failing every call or letting every call through. That state is
    not merged back: when Redis answers again the shared state applies, and the fallback starts
    empty for the next outage. Operator calls (load, reset) try Redis even then.
    """

    def __init__(self, redis: RedisAvailability, key_prefix: str = "llm:breaker:") -> None:
        self._redis = redis
        self._key_prefix = key_prefix
        self._script = redis.client.register_script(_STATE_MACHINE_LUA)
        self._fallback = MemoryBreakerStore()
        self._fallback_used = False

    async def admit(self, name: str, now: float, policy: BreakerPolicy) -> StoreResult:
        return await self._with_fallback(
            lambda: self._run(name, "admit", now, policy),
            lambda: self._fallback.admit(name, now, policy),
        )

    async def settle(
        self, name: str, outcome: Outcome, now: float, policy: BreakerPolicy, *, trial: bool
    ) -> StoreResult:
        return await self._with_fallback(
            lambda: self._run(name, outcome.value, now, policy, trial=trial),
            lambda: self._fallback.settle(name, outcome, now, policy, trial=trial),
        )

    async def load(self, name: str) -> BreakerRecord:
        async def shared() -> BreakerRecord:
            return _parse(await self._redis.client.hmget(self._key_prefix + name, _FIELDS))

        return await self._with_fallback(shared, lambda: self._fallback.load(name), explicit=True)

    async def reset(self, name: str) -> StoreResult:
        async def shared() -> StoreResult:
            # MULTI/EXEC: read the old state (to report the transition) and delete, atomically.
            async with self._redis.client.pipeline(transaction=True) as pipe:
                pipe.hget(self._key_prefix + name, "state")
                pipe.delete(self._key_prefix + name)
                previous, _ = await pipe.execute()
            return StoreResult(
                BreakerState(_text(previous) or BreakerState.CLOSED), BreakerRecord()
            )

        return await self._with_fallback(shared, lambda: self._fallback.reset(name), explicit=True)

    async def _run(
        self, name: str, op: str, now: float, policy: BreakerPolicy, *, trial: bool = False
    ) -> StoreResult:
        args: list[str | float] = [
            op,
            now,  # redis-py sends floats as repr(), which loses no precision
            policy.failure_threshold,
            policy.recovery_seconds,
            policy.window_seconds,
            policy.half_open_max_calls,
            int(trial),
        ]
        reply = await self._script(keys=[self._key_prefix + name], args=args)
        previous, admitted, as_trial, *fields = reply
        return StoreResult(
            previous=BreakerState(_text(previous) or BreakerState.CLOSED),
            record=_parse(fields),
            admitted=bool(admitted),
            trial=bool(as_trial),
        )

    async def _with_fallback(
        self,
        shared: Callable[[], Awaitable[R]],
        local: Callable[[], Awaitable[R]],
        *,
        explicit: bool = False,
    ) -> R:
        if self._redis.client_now(explicit=explicit) is None:
            return await self._local(local)
        try:
            result = await shared()
        except REDIS_ERRORS as exc:
            self._redis.failed(exc)
            return await self._local(local)
        self._redis.answered()
        if self._fallback_used:  # an outage's local state is not merged back
            self._fallback, self._fallback_used = MemoryBreakerStore(), False
        return result

    async def _local(self, local: Callable[[], Awaitable[R]]) -> R:
        self._fallback_used = True
        return await local()


def _text(value: bytes | str | None) -> str | None:
    # The client may or may not decode responses; accept both.
    return value.decode() if isinstance(value, bytes) else value


def _parse(values: Sequence[bytes | str | None]) -> BreakerRecord:
    state, failures, window_start, opened_at, in_flight, trial_started_at = map(_text, values)
    return BreakerRecord(
        state=BreakerState(state or BreakerState.CLOSED),
        failures=int(failures or 0),
        window_start=float(window_start or 0.0),
        opened_at=None if opened_at is None else float(opened_at),
        half_open_in_flight=int(in_flight or 0),
        trial_started_at=None if trial_started_at is None else float(trial_started_at),
    )
