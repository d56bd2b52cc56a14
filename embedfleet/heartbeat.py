"""A background beat for as long as a piece of work lasts: a lease that must not lapse while its
owner is alive (a running part's, a streaming submission's), and lapses soon after it dies."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)


class Heartbeat:
    """``with Heartbeat(beat, interval_s, name):`` calls ``beat`` every ``interval_s`` seconds in a
    daemon thread until the block ends. A failing beat is logged and tried again at the next one:
    the lease it renews simply lapses if the failures last."""

    def __init__(self, beat: Callable[[], object], interval_s: float, name: str) -> None:
        self._beat = beat
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._beat()
            except Exception:
                log.warning("%s: beat failed", self._thread.name, exc_info=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
