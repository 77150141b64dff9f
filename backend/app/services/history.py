"""Request history: what was processed, by whom, how fast, with what outcome (never the text)."""

import hashlib
from dataclasses import dataclass

from shared.text import HistoryPage, HistoryRecord, Operation
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.infrastructure.database.engine import Database
from app.infrastructure.database.group_commit import GroupCommitter
from app.infrastructure.database.models import RequestHistory, utcnow
from app.services.usage import Use, usage_updates


@dataclass(frozen=True)
class HistoryEntry:
    api_key_id: str
    operation: Operation
    text: str
    model: str
    cached: bool
    degraded: bool
    latency_ms: float
    outcome: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    tokens_estimated: bool = False
    streamed: bool = False
    time_to_first_token_ms: float | None = None
    job_id: str | None = None  # a job's item: the job and the item's position
    job_item: int | None = None


# The outcomes of a request the provider answered (usage counts it as a provider call).
ANSWERED = frozenset({"ok", "completed"})


class HistoryService:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._writer = GroupCommitter(database, write_entries)

    async def record(self, entry: HistoryEntry) -> None:
        """The request's history row and its key's usage, committed together (and together
        with concurrent requests' writes); returns once they are."""
        await self._writer.run(entry)

    async def close(self) -> None:
        await self._writer.close()

    async def page(self, api_key_id: str, *, page: int, page_size: int) -> HistoryPage:
        mine = RequestHistory.api_key_id == api_key_id
        async with self._database.session() as session:
            total, tokens_in, tokens_out = (
                await session.execute(
                    select(
                        func.count(),
                        func.coalesce(func.sum(RequestHistory.input_tokens), 0),
                        func.coalesce(func.sum(RequestHistory.output_tokens), 0),
                    ).where(mine)
                )
            ).one()
            rows = await session.scalars(
                select(RequestHistory)
                .where(mine)
                .order_by(RequestHistory.created_at.desc(), RequestHistory.id.desc())
                .offset((page - 1) * page_size)
                .limit(page_size)
            )
            items = [
                HistoryRecord(
                    id=row.id,
                    operation=Operation(row.operation),
                    text_length=row.text_length,
                    text_sha256=row.text_sha256,
                    model=row.model,
                    cached=row.cached,
                    degraded=row.degraded,
                    latency_ms=row.latency_ms,
                    outcome=row.outcome,
                    streamed=row.streamed,
                    time_to_first_token_ms=row.time_to_first_token_ms,
                    created_at=row.created_at,
                    input_tokens=row.input_tokens,
                    output_tokens=row.output_tokens,
                    tokens_estimated=row.tokens_estimated,
                    job_id=row.job_id,
                    job_item=row.job_item,
                )
                for row in rows
            ]
        return HistoryPage(
            items=items,
            total=total,
            page=page,
            page_size=page_size,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
        )


def _row(entry: HistoryEntry) -> dict[str, object]:
    return {
        "api_key_id": entry.api_key_id,
        "operation": entry.operation.value,
        "text_length": len(entry.text),
        "text_sha256": hashlib.sha256(entry.text.encode()).hexdigest(),
        "model": entry.model,
        "cached": entry.cached,
        "degraded": entry.degraded,
        "latency_ms": round(entry.latency_ms, 3),
        "outcome": entry.outcome,
        "streamed": entry.streamed,
        "time_to_first_token_ms": (
            None if entry.time_to_first_token_ms is None else round(entry.time_to_first_token_ms, 3)
        ),
        "created_at": utcnow(),
        "input_tokens": entry.input_tokens,
        "output_tokens": entry.output_tokens,
        "tokens_estimated": entry.tokens_estimated,
        "job_id": entry.job_id,
        "job_item": entry.job_item,
    }


_INSERT = insert(RequestHistory)  # on a Core connection: no ORM bulk-insert machinery


async def write_entries(connection: AsyncConnection, entries: list[HistoryEntry]) -> None:
    """The entries' rows and their keys' usage, in `connection`'s transaction. One multi-row
    INSERT for the rows and one UPDATE per key for the usage: set-based, so a batch costs a few
    statements however many requests it carries."""
    await connection.execute(_INSERT, [_row(entry) for entry in entries])
    uses = (
        Use(
            entry.api_key_id,
            cached=entry.cached,
            provider_call=entry.outcome in ANSWERED and not entry.cached,
            input_tokens=entry.input_tokens or 0,
            output_tokens=entry.output_tokens or 0,
        )
        for entry in entries
    )
    for counters in usage_updates(uses):
        await connection.execute(counters)
