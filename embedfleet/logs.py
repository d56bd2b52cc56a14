"""Log lines as text or JSON, each line of a part's work carrying the job id and part.

The part is held in a context variable that the part runner sets around one part
(``in_part_context``), and a handler filter copies it onto every record, so a line logged anywhere
below the runner (a job kind, the model host, the Milvus sink) names its part without being told.
Threads started inside a part do not inherit it; nothing in a part's path starts one that logs.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Concatenate, Literal, ParamSpec, TypeVar

_PART: ContextVar[tuple[str, int] | None] = ContextVar("embedfleet_part", default=None)

S = TypeVar("S")
P = ParamSpec("P")
R = TypeVar("R")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(part_label)s: %(message)s"


@contextmanager
def part_context(job_id: str, part: int) -> Iterator[None]:
    """Every line logged in this block (in this thread or task) carries ``job_id`` and ``part``."""
    token = _PART.set((job_id, part))
    try:
        yield
    finally:
        _PART.reset(token)


def in_part_context(
    method: Callable[Concatenate[S, str, int, P], R],
) -> Callable[Concatenate[S, str, int, P], R]:
    """Run a ``(self, job_id, part, ...)`` method inside ``part_context(job_id, part)``."""

    @functools.wraps(method)
    def wrapper(self: S, job_id: str, part: int, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with part_context(job_id, part):
            return method(self, job_id, part, *args, **kwargs)

    return wrapper


class PartContextFilter(logging.Filter):
    """Puts the current part on each record: ``job_id`` and ``part`` (None outside a part), and
    ``part_label`` (`` [job=… part=…]`` or ``""``) for the text format."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _PART.get()
        record.job_id, record.part = current if current is not None else (None, None)
        record.part_label = f" [job={current[0]} part={current[1]}]" if current is not None else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, process, and the
    part's ``job_id``/``part`` when the line belongs to one; ``exception`` holds a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        job_id = getattr(record, "job_id", None)
        if job_id is not None:
            line["job_id"] = job_id
            line["part"] = getattr(record, "part", None)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def make_handler(log_format: Literal["text", "json"]) -> logging.Handler:
    """A stderr handler in the given format that adds the part context to every record."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(PartContextFilter())
    return handler


def configure_logging(log_format: Literal["text", "json"], level: str) -> None:
    """Make the root logger write ``log_format`` lines at ``level`` to stderr (replacing its handlers)."""
    root = logging.getLogger()
    root.handlers = [make_handler(log_format)]
    root.setLevel(level)
