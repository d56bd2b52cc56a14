"""A progress bar over a WatchJob stream (rich), shared by both SDK clients' ``wait`` and the CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from embedfleet.client.types import FailedChunk, Job

# Called once for each part that failed, as soon as an update of the job names it.
ErrorCallback = Callable[[FailedChunk], None]


class JobProgress:
    """Renders job updates (documents/s, ETA) when ``enabled``; always remembers the last one, and
    hands each newly failed part to ``on_error`` (once per part, however many updates name it)."""

    def __init__(
        self, enabled: bool = True, console: Console | None = None, on_error: ErrorCallback | None = None
    ) -> None:
        self.last: Job | None = None
        self._on_error = on_error
        self._reported: set[int] = set()
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if enabled:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:.0f} docs/s"),
                TextColumn("ETA {task.fields[eta]}"),
                TimeElapsedColumn(),
                console=console or Console(stderr=True),
                transient=False,
            )

    def __enter__(self) -> JobProgress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("queued", total=None, rate=0.0, eta="-")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, job: Job) -> None:
        self.last = job
        if self._on_error is not None:
            for chunk in job.failed_chunks:
                if chunk.chunk_index not in self._reported:
                    self._reported.add(chunk.chunk_index)
                    self._on_error(chunk)
        if self._bar is None or self._task is None:
            return
        self._bar.update(
            self._task,
            description=f"{job.kind} {job.id[:8]} {job.state.value.lower()}",
            total=job.total,
            completed=job.done + job.failed,
            rate=job.docs_per_second,
            eta=f"{job.eta_seconds:.0f}s" if job.eta_seconds > 0 else "-",
        )

    def final(self) -> Job:
        if self.last is None:
            raise RuntimeError("the job stream ended without any update")
        return self.last


def follow(
    updates: Iterable[Job], enabled: bool = True, console: Console | None = None, on_error: ErrorCallback | None = None
) -> Job:
    """Consume a watch stream (rendering it when ``enabled``); return the final job."""
    with JobProgress(enabled, console, on_error) as view:
        for job in updates:
            view.update(job)
    return view.final()
