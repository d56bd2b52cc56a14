"""A bounded two-stage thread pipeline: the caller's thread produces (the model's forward passes)
while one more thread consumes (post-processing and the Milvus write), at most ``depth`` items apart.

The forward pass holds the cores; the upsert mostly waits on a socket. Run one after the other, the
model idles while Milvus answers; overlapped, the write of batch k hides behind the forward pass of
batch k+1. Bounded, so a slow Milvus slows the model down instead of piling vectors up in memory.
The first error of either stage stops both and is raised in the caller's thread, after the consumer
has finished with what it held, so a part never reports done with rows still unwritten.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_DEPTH = 2


class _End:
    """The marker after the last item."""


class _Consumer(Generic[T]):
    def __init__(self, consume: Callable[[T], None], depth: int) -> None:
        self.items: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self._consume = consume
        self.thread = threading.Thread(target=self._run, name="embedfleet-pipeline", daemon=True)

    def _run(self) -> None:
        while not isinstance(item := self.items.get(), _End):
            if self.error is None:  # after an error keep draining, so the producer never blocks
                try:
                    self._consume(item)
                except BaseException as exc:
                    self.error = exc


def overlap(items: Iterator[T], consume: Callable[[T], None], depth: int = DEFAULT_DEPTH) -> None:
    """``consume(item)`` for every item, in order, in a second thread while the next is produced."""
    consumer = _Consumer(consume, depth)
    consumer.thread.start()
    try:
        for item in items:
            if consumer.error is not None:
                break
            consumer.items.put(item)
    finally:
        consumer.items.put(_End())
        consumer.thread.join()
    if consumer.error is not None:
        raise consumer.error
