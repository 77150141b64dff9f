"""Per-caller request limits: `limits`' moving window, counted in Redis (in memory if it is down).

- Moving window: at most N requests in any 60 seconds, so there is no burst of 2N at a window
  boundary, and the reset time is exact (when the oldest counted request leaves the window).
- In Redis, one script charges a request and counts the window it leaves, on the app's own client
  (its short timeouts and no-retry policy; tests hand in fakeredis exactly as for the cache).
  `limits` takes two round trips for that, `hit` then `get_window_stats`: with 20 concurrent
  callers on uvloop and a local Redis, 0.42 ms of the process's CPU per request against 0.21 ms
  for the script (medians of four runs of 6,000 each). The script is `limits`' own two
  (acquire_moving_window.lua, then moving_window.lua) in one, on the keys `limits` names: the
  window is the same, and a test reads it back through `limits`.
- A busy key is charged ahead: a worker takes up to a second's worth of the key's limit
  (per_minute / 60, at most RESERVE_MAX) in one round trip and hands it out in-process, and
  what it has not handed out after `reserve_seconds` (RATE_LIMIT_RESERVE_SECONDS) goes back to
  the window (the entries of one charge share a timestamp, so one LREM removes them). The batch
  doubles while the last one ran out within its time, and starts again from the request alone
  when it did not; a first request, or a tier of 60 a minute or less, is charged alone, as
  before.
  Entries charged ahead are in the window before they are used, so they never let a caller past
  its limit. Stamped when charged, they leave the window up to `reserve_seconds` early: at most
  one batch per worker can be used again that much sooner. Held by one worker, they are refused
  to the others for up to `reserve_seconds`; charged before a Redis restart, they are handed out
  although the restart lost them (a looser window, as after an outage). In return a limited
  request stops paying a round trip to Redis each (README, Benchmarks).
- A Redis failure never fails the request: this process counts in memory, with `limits`, while
  its `RedisAvailability` holds Redis down. Requests counted in memory during an outage are not in
  Redis afterwards: the limit is looser for one window, never stricter.
- Windows use the wall clock (`time.time()`, as `limits` does), not the injected clock.
"""

import asyncio
import contextlib
import functools
import math
import time
from dataclasses import dataclass, field
from typing import Literal

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.commands.core import AsyncScript

from app.infrastructure.redis_client import REDIS_ERRORS, RedisAvailability

Backend = Literal["redis", "memory", "memory-fallback"]

RESERVE_MAX = 64  # entries a worker charges ahead at once, at most

# KEYS[1]: the window, a list of timestamps, newest first, at most `limit` long.
# ARGV: now, limit, expiry (seconds), amount, batch, and what goes back first: a stamp and how
# many of its entries. Charges `batch` entries if the window has room for them, else `amount`,
# else nothing. Returns {charged (entries), count, oldest}: the requests in the window after the
# charge, and the oldest one's timestamp (now if none).
_CHARGE_AND_COUNT_LUA = """
local key = KEYS[1]
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local expiry, amount = tonumber(ARGV[3]), tonumber(ARGV[4])
local batch, returned = tonumber(ARGV[5]), tonumber(ARGV[7])
local since = now - expiry

if returned > 0 then
    redis.call('lrem', key, returned, ARGV[6])
end

local charged = 0
for _, wanted in ipairs({batch, amount}) do
    if charged == 0 and wanted > 0 and wanted <= limit then
        local entry = redis.call('lindex', key, limit - wanted)
        if not (entry and tonumber(entry) >= since) then
            local entries = {}
            for i = 1, wanted do
                entries[i] = ARGV[1]
            end
            for i = 1, #entries, 5000 do
                redis.call('lpush', key, unpack(entries, i, math.min(i + 4999, #entries)))
            end
            redis.call('ltrim', key, 0, limit - 1)
            redis.call('expire', key, expiry)
            charged = wanted
        end
    end
end

local low, high, oldest = 0, redis.call('llen', key) - 1, -1
while low <= high do
    local mid = math.floor((low + high) / 2)
    local value = tonumber(redis.call('lindex', key, mid))
    if value and value >= since then
        oldest = mid
        low = mid + 1
    else
        high = mid - 1
    end
end
if oldest < 0 then
    return {charged, 0, ARGV[1]}
end
return {charged, oldest + 1, redis.call('lindex', key, oldest)}
"""


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    allowed: bool
    limit: int
    remaining: int
    reset_at: float  # epoch seconds when the oldest counted request leaves the window
    retry_after_seconds: float | None  # set only when refused

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }

    @classmethod
    def of_window(
        cls, item: RateLimitItem, *, allowed: bool, count: int, oldest: float, now: float
    ) -> "RateLimitResult":
        reset_at = oldest + item.get_expiry()
        return cls(
            allowed=allowed,
            limit=item.amount,
            remaining=max(0, item.amount - count),
            reset_at=reset_at,
            retry_after_seconds=None if allowed else max(0.0, reset_at - now),
        )


@dataclass(eq=False, slots=True)
class _Reservation:
    """One charge of a key's window by this worker, handed out a request at a time."""

    stamp: str  # the timestamp its entries carry in the window
    size: int  # entries charged
    left: int  # of those, not handed out yet
    count: int  # entries in the window after the charge, every worker's, these included
    oldest: float
    until: float  # monotonic: what is left then goes back
    expiry: asyncio.TimerHandle | None = field(default=None, repr=False)

    def take(self, cost: int, now: float) -> bool:
        if self.left < cost or now >= self.until:
            return False
        self.left -= cost
        return True

    def next_size(self, now: float, cost: int, most: int) -> int:
        """All handed out within its time: twice as many. Otherwise the request alone."""
        size = self.size * 2 if self.left == 0 and now < self.until else cost
        return max(cost, min(most, size))


class RateLimiter:
    def __init__(
        self,
        redis: RedisAvailability | None,
        *,
        reserve_seconds: float = 0.0,
        key_prefix: str = "llm:ratelimit",
    ) -> None:
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._key_prefix = key_prefix
        self._shared: tuple[RedisAvailability, AsyncScript] | None = None
        if redis is not None:
            self._shared = (redis, redis.client.register_script(_CHARGE_AND_COUNT_LUA))
        self._reserve_seconds = reserve_seconds  # 0: every request charged on its own
        self._reserved: dict[str, _Reservation] = {}
        self._charging: dict[str, asyncio.Future[RateLimitResult]] = {}  # one per key at a time
        self._returns: set[asyncio.Task[None]] = set()

    @property
    def backend(self) -> Backend:
        if self._shared is None:
            return "memory"
        return "redis" if self._shared[0].up else "memory-fallback"

    async def hit(self, identity: str, *, per_minute: int, cost: int = 1) -> RateLimitResult:
        """Charge `cost` requests to `identity`; refused (and not charged) if over `per_minute`."""
        item = RateLimitItemPerMinute(per_minute)
        if self._shared is not None:
            availability, script = self._shared
            if availability.client_now() is not None:
                try:
                    result = await self._hit_shared(script, item, identity, cost)
                except REDIS_ERRORS as exc:
                    availability.failed(exc)
                else:
                    availability.answered()
                    return result
        return await self._hit_memory(item, identity, cost)

    async def _hit_shared(
        self, script: AsyncScript, item: RateLimitItem, identity: str, cost: int
    ) -> RateLimitResult:
        key = f"{self._key_prefix}:{item.key_for(identity)}"
        most = min(RESERVE_MAX, item.amount // 60) if self._reserve_seconds > 0 else 1
        if most <= 1:  # charged request by request: nothing is held, nothing goes back
            return await self._charge(script, item, key, cost, None, most)
        while True:
            reservation = self._reserved.get(key)
            if reservation is not None and reservation.take(cost, time.monotonic()):
                return RateLimitResult.of_window(
                    item,
                    allowed=True,
                    count=reservation.count - reservation.left,
                    oldest=reservation.oldest,
                    now=time.time(),
                )
            if (charging := self._charging.get(key)) is None:
                break
            await asyncio.wait([charging])  # then take from what it charged, or charge again
        # A task of its own, shielded: a caller that goes away meanwhile (a client disconnecting)
        # does not leave a batch charged in Redis and known to no one, never given back.
        charge = asyncio.ensure_future(self._charge(script, item, key, cost, reservation, most))
        self._charging[key] = charge
        charge.add_done_callback(functools.partial(self._charged, key))
        return await asyncio.shield(charge)

    def _charged(self, key: str, charge: "asyncio.Future[RateLimitResult]") -> None:
        if self._charging.get(key) is charge:
            del self._charging[key]
        if not charge.cancelled():
            charge.exception()  # its caller may be gone: retrieved here, raised to the caller

    async def _charge(
        self,
        script: AsyncScript,
        item: RateLimitItem,
        key: str,
        cost: int,
        last: _Reservation | None,
        most: int,
    ) -> RateLimitResult:
        """Charges a batch of up to `most` entries, this request's among them, in one round trip;
        what `last` has not handed out goes back in the same one."""
        now, started = time.time(), time.monotonic()
        size = cost if last is None else last.next_size(started, cost, most)
        back = ("", 0)
        if last is not None:  # what it has left goes back with this charge, not on its timer
            back = (last.stamp, last.left)
            last.left = 0
            self._forget(key, last)
        charged, count, oldest = await script(
            keys=[key], args=[repr(now), item.amount, item.get_expiry(), cost, size, *back]
        )
        charged, count = int(charged), int(count)
        if charged >= cost and most > 1:
            # Kept even when nothing is left: how fast it ran out sets the next batch's size.
            reservation = _Reservation(
                stamp=repr(now),
                size=charged,
                left=charged - cost,
                count=count,
                oldest=float(oldest),
                until=started + self._reserve_seconds,
            )
            reservation.expiry = asyncio.get_running_loop().call_later(
                self._reserve_seconds, self._expire, key, reservation
            )
            self._reserved[key] = reservation
            count -= reservation.left
        return RateLimitResult.of_window(
            item, allowed=charged >= cost, count=count, oldest=float(oldest), now=now
        )

    def _forget(self, key: str, reservation: _Reservation) -> None:
        if reservation.expiry is not None:
            reservation.expiry.cancel()
        if self._reserved.get(key) is reservation:
            del self._reserved[key]

    def _expire(self, key: str, reservation: _Reservation) -> None:
        """Its time is up: what is left goes back to the window."""
        self._forget(key, reservation)
        if reservation.left > 0:
            task = asyncio.create_task(self._give_back(key, reservation.stamp, reservation.left))
            reservation.left = 0
            self._returns.add(task)
            task.add_done_callback(self._returns.discard)

    async def _give_back(self, key: str, stamp: str, count: int) -> None:
        assert self._shared is not None  # reservations are made in Redis only
        availability, script = self._shared
        # Best effort, and no request waits for it: never the probe of a Redis held down, and a
        # failure does not hold Redis down for the process (the next request's command finds
        # out for itself). Entries not given back leave the window with time.
        if availability.client_if_up() is None:
            return
        with contextlib.suppress(*REDIS_ERRORS):
            await script(keys=[key], args=[repr(time.time()), 1, 60, 0, 0, stamp, count])

    async def aclose(self) -> None:
        """Give back what was charged ahead and not handed out, before Redis is closed."""
        for key, reservation in list(self._reserved.items()):
            self._expire(key, reservation)
        await asyncio.gather(*self._returns, return_exceptions=True)

    async def _hit_memory(self, item: RateLimitItem, identity: str, cost: int) -> RateLimitResult:
        allowed = await self._memory.hit(item, identity, cost=cost)
        stats = await self._memory.get_window_stats(item, identity)
        return RateLimitResult.of_window(
            item,
            allowed=allowed,
            count=item.amount - stats.remaining,
            oldest=stats.reset_time - item.get_expiry(),
            now=time.time(),
        )
