"""Operator API contracts (/internal): cache statistics and invalidation, circuit breakers."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.text import Operation


class CacheStats(BaseModel):
    backend: str = Field(description="redis, memory, or memory-fallback while Redis is down.")
    hits: int
    misses: int
    stale_hits: int
    hit_ratio: float
    key_count: int


class InvalidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operation: Operation | None = Field(default=None, description="Only this operation; or all.")


class InvalidateResponse(BaseModel):
    removed: int


class BreakerView(BaseModel):
    name: str
    state: str = Field(description="closed, open or half_open.")
    failure_count: int
    opened_at: datetime | None
    next_trial_at: datetime | None


class BreakersResponse(BaseModel):
    breakers: list[BreakerView]
