"""Resilience for calls to the AI provider: a circuit breaker whose state several workers share.

`breaker` holds the state machine and `CircuitBreaker`, the object callers wrap provider calls
with; `breaker_store` keeps the state, per process (`MemoryBreakerStore`) or in Redis
(`RedisBreakerStore`), so that every uvicorn worker sees the same open circuit.
"""
