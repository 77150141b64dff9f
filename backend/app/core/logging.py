"""Logging: every record, ours and the standard library's (uvicorn, SQLAlchemy, warnings), goes
through one structlog renderer: a JSON object per line (LOG_FORMAT=json) or a console line.

The code logs with the standard `logging` module; structlog's `ProcessorFormatter` renders what
it receives. Each line logged while a request is served carries that request's fields: its id
from the start, then what becomes known (route, key id, model...), from a context variable the
request middleware sets. Why structlog over python-json-logger: one processor chain renders both
formats, and it merges context variables into foreign records without a logging filter per field.
"""

import logging
import os
import sys
from contextvars import ContextVar, Token
from typing import Any, Literal

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, WrappedLogger

LogFormat = Literal["json", "console"]

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
# One dict per request, created by the middleware and filled in as the request goes: a dict
# rather than values, so fields set deep in a dependency are seen by the middleware's last line.
_request_fields: ContextVar[dict[str, Any] | None] = ContextVar("request_fields", default=None)
RequestTokens = tuple[Token[str], Token[dict[str, Any] | None]]


def start_request(request_id: str, **fields: Any) -> RequestTokens:
    return request_id_var.set(request_id), _request_fields.set(dict(fields))


def end_request(tokens: RequestTokens) -> None:
    request_id_var.reset(tokens[0])
    _request_fields.reset(tokens[1])


def annotate_request(**fields: Any) -> None:
    """Add fields to every later line of the current request (none outside a request)."""
    current = _request_fields.get()
    if current is not None:
        current.update(fields)


def _add_request_fields(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    fields = _request_fields.get()
    if fields is not None:
        event.setdefault("request_id", request_id_var.get())
        for name, value in fields.items():
            event.setdefault(name, value)
    return event


def _drop_color_message(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)  # uvicorn's copy of the message with terminal colours
    return event


def _add_pid(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    event["pid"] = os.getpid()  # which worker, when several serve
    return event


def _renderer(log_format: LogFormat) -> list[structlog.typing.Processor]:
    if log_format == "json":
        # No local variables in tracebacks: they would carry request bodies and keys.
        tracebacks = ExceptionDictTransformer(show_locals=False)
        return [
            _add_pid,
            structlog.processors.ExceptionRenderer(tracebacks),
            structlog.processors.JSONRenderer(),
        ]
    return [structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)]


def _handler(log_format: LogFormat) -> logging.Handler:
    before_render: list[structlog.typing.Processor] = [
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request_fields,
    ]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=before_render,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *_renderer(log_format),
            ],
        )
    )
    return handler


def uvicorn_handler() -> logging.Handler:
    """The handler of `log_config.json`, which `uvicorn --log-config` applies in each of its
    processes before any app exists: the reloader's and the workers' parent's lines too."""
    from app.core.config import load_settings

    return _handler(load_settings().log_renderer)


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Route every logger to one handler on stderr, rendered as `log_format`."""
    root = logging.getLogger()
    root.handlers = [_handler(log_format)]
    root.setLevel(level)
    # uvicorn set up its own handlers before it built the app: its records now go through ours.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # The request middleware writes the access line, with the request's fields; uvicorn's own
    # (`--no-access-log` also stops it) would be a second line for each request.
    access = logging.getLogger("uvicorn.access")
    access.handlers = [logging.NullHandler()]
    access.propagate = False
    logging.captureWarnings(True)  # Python warnings become records of the `py.warnings` logger
    # aiosqlite logs every statement with its parameters (emails, names) at DEBUG.
    logging.getLogger("aiosqlite").setLevel(max(root.level, logging.INFO))
    # sse-starlette logs every event it sends (the answer's text, so the user's) at DEBUG.
    logging.getLogger("sse_starlette").setLevel(max(root.level, logging.INFO))
    # Alembic announces each plugin and each step at INFO, a dozen lines at every start;
    # Database.migrate says in one line what it did.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Taskiq logs every task it runs at INFO (and its arguments at DEBUG): a line per job item.
    logging.getLogger("taskiq").setLevel(max(root.level, logging.WARNING))
