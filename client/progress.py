"""A progress bar over a WatchJob stream (rich), shared by the SDK's ``wait`` and the CLI."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from embedfleet.client.types import Job


def follow(updates: Iterable[Job], console: Console | None = None) -> Job:
    """Render each update; return the final job."""
    last: Job | None = None
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.0f} docs/s"),
        TextColumn("ETA {task.fields[eta]}"),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
        transient=False,
    ) as progress:
        task = progress.add_task("queued", total=None, rate=0.0, eta="-")
        for job in updates:
            last = job
            eta = f"{job.eta_seconds:.0f}s" if job.eta_seconds > 0 else "-"
            progress.update(
                task,
                description=f"{job.kind} {job.id[:8]} {job.state.value.lower()}",
                total=job.total,
                completed=job.done + job.failed,
                rate=job.docs_per_second,
                eta=eta,
            )
    if last is None:
        raise RuntimeError("the job stream ended without any update")
    return last
