"""The ``embedfleet`` command: run the system (up, gateway, worker, demo) and use it (index, embed,
jobs, models, search). Server commands import their heavy parts only when invoked.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any

import click
import grpc
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from embedfleet.domain import JobState
from embedfleet.errors import EmbedfleetError

console = Console()
err_console = Console(stderr=True)
SAMPLE_CORPUS = "wordnet_sample.jsonl"


# Exit codes (documented in the README and `embedfleet --help`): what went wrong, for scripts.
EXIT_JOB_NOT_SUCCEEDED = 1  # the job ended FAILED or CANCELLED
EXIT_BY_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 3,
    grpc.StatusCode.NOT_FOUND: 4,
    grpc.StatusCode.FAILED_PRECONDITION: 5,
    grpc.StatusCode.UNAVAILABLE: 6,
    grpc.StatusCode.DEADLINE_EXCEEDED: 6,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 7,
    grpc.StatusCode.UNAUTHENTICATED: 8,
    grpc.StatusCode.PERMISSION_DENIED: 8,
}
EXIT_LOCAL_INPUT = 3  # a local corpus file or an argument is wrong
EXIT_OTHER = 10
EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 the job ended FAILED or CANCELLED; 2 usage error; 3 invalid argument or input "
    "file; 4 not found; 5 failed precondition; 6 unavailable or deadline exceeded (retry later); 7 resource "
    "exhausted (limit or quota); 8 unauthenticated or permission denied; 10 other server error."
)


def _json_mode() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().obj and ctx.find_root().obj.get("json"))


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, default=_jsonable, ensure_ascii=False))


def _emit(value: Any, show: Callable[[], None]) -> None:
    """Print ``value`` as JSON under --json, else the way ``show`` prints it for people."""
    if _json_mode():
        _print_json(value)
    else:
        show()


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, BaseModel):  # domain types inside SDK results (a collection's fields and index)
        return value.model_dump(mode="json")
    return value.value if isinstance(value, Enum) else str(value)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().ensure_object(dict)["json"] = True


def _fail_cleanly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print server and input errors as one readable line (or a JSON object with --json) and exit with
    the code for the error's kind, without a traceback."""

    def fail(code: int, kind: str, message: str) -> None:
        if _json_mode():
            _print_json({"error": {"code": kind, "message": message}})
        else:
            err_console.print(
                f"[red]error[/red] {kind}: {message}" if kind != "input" else f"[red]error[/red] {message}"
            )
        sys.exit(code)

    @click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        help="Print results (and errors) as JSON, for scripts (the same as embedfleet --json).",
    )
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except grpc.RpcError as exc:
            status: grpc.StatusCode = exc.code()
            fail(EXIT_BY_CODE.get(status, EXIT_OTHER), status.name, exc.details() or "")
        except (EmbedfleetError, ValueError, FileNotFoundError) as exc:
            fail(EXIT_LOCAL_INPUT, "input", str(exc))

    return wrapper


def _client(ctx: click.Context) -> Any:
    from embedfleet.client.sdk import EmbedfleetClient

    return EmbedfleetClient(ctx.obj["gateway"], **ctx.obj["connection"])


@click.group(epilog=EXIT_CODES_HELP)
@click.option(
    "--gateway",
    envvar="EMBEDFLEET_GATEWAY",
    default="127.0.0.1:50051",
    show_default=True,
    help="Gateway address for client commands: host:port, or grpcs://host:port for TLS.",
)
@click.option("--api-key", envvar="EMBEDFLEET_API_KEY", default="", help="Sent as a bearer token with every call.")
@click.option("--ca-file", envvar="EMBEDFLEET_CA_FILE", default=None, help="CA certificate (PEM) to trust for TLS.")
@click.option("--cert-file", envvar="EMBEDFLEET_CERT_FILE", default=None, help="Client certificate for mutual TLS.")
@click.option("--key-file", envvar="EMBEDFLEET_KEY_FILE", default=None, help="Client key for mutual TLS.")
@click.option(
    "--profile",
    envvar="EMBEDFLEET_PROFILE",
    default="default",
    show_default=True,
    help="Connection profile from ~/.config/embedfleet/profiles.toml (or $EMBEDFLEET_PROFILES); "
    "options and EMBEDFLEET_* variables override it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print results (and errors) as JSON, for scripts.")
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
@click.pass_context
def main(ctx: click.Context, profile: str, as_json: bool, verbose: bool, **connection: str | None) -> None:
    """embedfleet: batch embedding over gRPC, a task queue and Milvus.

    Every setting also comes from EMBEDFLEET_* variables (EMBEDFLEET_GATEWAY, EMBEDFLEET_API_KEY, ...)
    or from a profile (--profile). Shell completion: eval "$(embedfleet completion bash)" (or zsh, fish).
    """
    from click.core import ParameterSource

    from embedfleet.client.profiles import ProfileError, load_profile

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        profiled, warnings = load_profile(profile)
    except ProfileError as exc:
        raise click.UsageError(str(exc)) from None
    for warning in warnings:
        err_console.print(f"[yellow]warning:[/] {warning}")
    for key, value in profiled.items():  # only where neither an option nor a variable gave a value
        if ctx.get_parameter_source(key) in (ParameterSource.DEFAULT, None):
            connection[key] = value
    ctx.ensure_object(dict)
    ctx.obj["gateway"] = connection.pop("gateway")
    ctx.obj["json"] = ctx.obj.get("json", False) or as_json
    ctx.obj["connection"] = connection
    ctx.obj["verbose"] = verbose


# -- running the system -----------------------------------------------------------------------
def _block_until_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


@main.command()
@click.option("--port", default=50051, show_default=True, help="Gateway port (0 picks a free one).")
@click.option("--milvus-port", default=19530, show_default=True)
@click.option("--workers", default=1, show_default=True, help="Celery worker processes (or Ray actors).")
@click.option("--backend", type=click.Choice(["celery", "ray"]), default="celery", show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path(".embedfleet"), show_default=True)
@click.option("--redis-url", envvar="REDIS_URL", default="redis://127.0.0.1:6379/0", show_default=True)
def up(port: int, milvus_port: int, workers: int, backend: str, data_dir: Path, redis_url: str) -> None:
    """Run Milvus Lite, workers and the gateway on 127.0.0.1 until Ctrl-C."""
    from embedfleet.local import LocalCluster
    from embedfleet.settings import CommonSettings

    cluster = LocalCluster(
        data_dir=data_dir,
        key_prefix=CommonSettings().key_prefix,
        redis_url=redis_url,
        backend=backend,
        workers=workers,
        gateway_port=port,
        milvus_port=milvus_port,
        log_dir=data_dir / "logs",
    )
    with cluster:
        err_console.print(
            f"embedfleet is up: gateway {cluster.gateway_address}, Milvus {cluster.milvus_uri}, "
            f"{workers} {'Celery worker' if backend == 'celery' else 'Ray actor'}(s). Logs in {data_dir / 'logs'}. "
            "Auth is OFF (loopback, one user: no API key needed). Ctrl-C stops everything."
        )
        _block_until_signal()
    err_console.print("stopped")


@main.command()
@click.option("--host", default=None, help="Bind address (default from settings: 127.0.0.1).")
@click.option("--port", type=int, default=None)
@click.pass_context
def gateway(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the gRPC gateway alone (Redis and Milvus by URI, from settings)."""
    from embedfleet.gateway.server import start_gateway
    from embedfleet.gateway.settings import GatewaySettings
    from embedfleet.logs import configure_logging

    overrides: dict[str, Any] = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = GatewaySettings(**overrides)
    configure_logging(settings.log_format, "DEBUG" if ctx.obj["verbose"] else settings.log_level)
    running = start_gateway(settings)
    auth = "on: every call needs an API key" if settings.auth else "OFF: no API key is asked for (loopback only)"
    err_console.print(f"gateway serving on {running.address}; auth {auth}")
    _block_until_signal()
    running.stop()


@main.command()
@click.option("--worker-id", default=None, help="Name in heartbeats and logs (default host-pid).")
@click.option("--concurrency", type=int, default=None, help="Worker processes, each with its own models.")
@click.pass_context
def worker(ctx: click.Context, worker_id: str | None, concurrency: int | None) -> None:
    """Run a worker on the configured backend's queues (Celery; Ray workers are actors the gateway starts)."""
    from embedfleet.worker.settings import WorkerSettings

    overrides: dict[str, Any] = {
        k: v for k, v in {"worker_id": worker_id, "concurrency": concurrency}.items() if v is not None
    }
    if ctx.obj["verbose"]:
        overrides["log_level"] = "DEBUG"
    settings = WorkerSettings(**overrides)
    if settings.backend != "celery":
        raise click.UsageError("with EMBEDFLEET_BACKEND=ray the gateway runs workers as Ray actors")
    if settings.metrics_port:
        from embedfleet.metrics_multiprocess import prepare_multiprocess_dir

        prepare_multiprocess_dir()  # before the worker's modules import prometheus_client
    from embedfleet.worker.celery_worker import run_worker

    run_worker(settings)


# -- using it ---------------------------------------------------------------------------------
def _show_job(job: Any) -> None:
    _emit(job, lambda: _print_job(job))


def _print_job(job: Any) -> None:
    table = Table(show_header=False, box=None)
    for key in (
        "id",
        "kind",
        "state",
        "model",
        "collection",
        "total",
        "done",
        "failed",
        "truncated",
        "docs_per_second",
        "error",
        "results_uri",
    ):
        value = getattr(job, key)
        if value not in ("", None):
            table.add_row(key, f"{value:.1f}" if isinstance(value, float) else str(value))
    console.print(table)
    for chunk in job.failed_chunks:
        console.print(
            f"  chunk {chunk.chunk_index} (documents {chunk.first_document}.."
            f"{chunk.first_document + chunk.document_count - 1}): {chunk.message}"
        )


def _exit_for(job: Any) -> None:
    _show_job(job)
    if job.state != JobState.SUCCEEDED:
        sys.exit(EXIT_JOB_NOT_SUCCEEDED)


def _pairs(pairs: tuple[str, ...], option: str, value_type: type = str) -> dict[str, Any]:
    """KEY=VALUE pairs of a repeatable option, each value read as ``value_type``."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            if not (sep and key and value):
                raise ValueError(pair)
            parsed[key] = value_type(value)
        except ValueError:
            shape = "INT" if value_type is int else "VALUE"
            raise click.BadParameter(f"{pair!r}: use KEY={shape}", param_hint=option) from None
    return parsed


def _extra_fields(specs: tuple[str, ...]) -> list[dict[str, Any]]:
    """``NAME[:DIMS][:PRECISION[:BITS]]`` specs of a repeatable --extra-field, as the SDK's ``extra_fields``."""
    fields: list[dict[str, Any]] = []
    for spec in specs:
        name, _, rest = spec.partition(":")
        dims, _, rest = rest.partition(":")
        precision, _, bits = rest.partition(":")
        if not name or (dims and not dims.isdigit()) or ":" in bits:
            raise click.BadParameter(
                f"{spec!r}: use NAME[:DIMS][:PRECISION[:BITS]], e.g. v128:128, bits::binary or bits::binary:rotated",
                param_hint="--extra-field",
            )
        fields.append({"name": name, "dimensions": int(dims or 0), "precision": precision or "float32", "bits": bits})
    return fields


_model_options = [
    click.option("--model", default="", help="Model name or role (default: the registry's default)."),
    click.option("--dimensions", type=int, default=0, help="Matryoshka prefix length (0 = full)."),
    click.option("--chunk-size", type=int, default=0, help="Documents per chunk (0 = gateway default)."),
    click.option("--name", "display_name", default="", help="A label for the job."),
    click.option("--server-path", is_flag=True, help="CORPUS is a path on the gateway, not a local file."),
    click.option(
        "--by-reference",
        is_flag=True,
        help="CORPUS is a file, directory or glob in the dataset store (or under the allowed corpus dirs) "
        "that the workers read themselves.",
    ),
]


def _corpus_args(corpus: str, server_path: bool, by_reference: bool) -> dict[str, Any]:
    """The SDK arguments that say where CORPUS is: a local file streamed, a gateway path, or a reference."""
    local = not (server_path or by_reference)
    return {
        "corpus": corpus if local else None,
        "server_path": corpus if server_path else "",
        "source_uri": corpus if by_reference else "",
    }


def _with_model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_model_options):
        command = option(command)
    return command


@main.command()
@click.argument("corpus")
@click.option("--collection", required=True, help="Milvus collection to upsert into.")
@_with_model_options
@click.option("--index-type", default="", help="FLAT, IVF_FLAT, IVF_SQ8, HNSW or AUTOINDEX (a new collection's).")
@click.option("--index-param", "index_params", multiple=True, metavar="KEY=INT", help="e.g. M=16, nlist=128.")
@click.option(
    "--extra-field",
    "extra_fields",
    multiple=True,
    metavar="NAME[:DIMS][:PRECISION[:BITS]]",
    help="Another representation in each row: v128:128 (a Matryoshka prefix), bits::binary, codes::int8; "
    "bits::binary:rotated or :axes picks what the bits are the signs of.",
)
@click.option(
    "--column",
    "columns",
    multiple=True,
    metavar="ROLE=NAME",
    help="With --by-reference or --server-path: the corpus's column for id, text or metadata, e.g. text=sentence.",
)
@click.option("--dedup-threshold", type=float, default=None, help="Skip (or mark) near-duplicates at this cosine.")
@click.option("--dedup-action", type=click.Choice(["skip", "mark"]), default="skip", show_default=True)
@click.option("--no-wait", is_flag=True, help="Print the job id and return at once.")
@click.pass_context
@_fail_cleanly
def index(
    ctx: click.Context,
    corpus: str,
    collection: str,
    model: str,
    dimensions: int,
    chunk_size: int,
    display_name: str,
    server_path: bool,
    index_type: str,
    index_params: tuple[str, ...],
    extra_fields: tuple[str, ...],
    columns: tuple[str, ...],
    dedup_threshold: float | None,
    dedup_action: str,
    by_reference: bool,
    no_wait: bool,
) -> None:
    """Embed CORPUS (JSONL or Parquet of {id, text, metadata}) into a Milvus collection:
    embedfleet index corpus.jsonl --collection docs --extra-field v128:128 --extra-field bits::binary"""
    with _client(ctx) as client:
        job = client.submit_index(
            collection=collection,
            model=model,
            dimensions=dimensions,
            chunk_size=chunk_size,
            display_name=display_name,
            **_corpus_args(corpus, server_path, by_reference),
            columns=_pairs(columns, "--column") or None,
            extra_fields=_extra_fields(extra_fields),
            index={"type": index_type, "params": _pairs(index_params, "--index-param", int)},
            dedup=None if dedup_threshold is None else {"threshold": dedup_threshold, "action": dedup_action},
        )
        if no_wait:
            _emit(job, lambda: console.print(job.id))
            return
        _exit_for(client.wait(job.id, progress=not _json_mode()))


@main.command()
@click.argument("corpus")
@click.option("--output", "-o", required=True, help="Where to write the vectors: .npy or .parquet.")
@_with_model_options
@click.option("--precision", type=click.Choice(["float32", "float16", "int8", "binary"]), default="float32")
@click.option("--input-type", type=click.Choice(["document", "query"]), default="document")
@click.pass_context
@_fail_cleanly
def embed(
    ctx: click.Context,
    corpus: str,
    output: str,
    model: str,
    dimensions: int,
    chunk_size: int,
    display_name: str,
    server_path: bool,
    by_reference: bool,
    precision: str,
    input_type: str,
) -> None:
    """Embed CORPUS and write the vectors, in input order, to OUTPUT."""
    with _client(ctx) as client:
        path = client.embed_corpus(
            output=output,
            progress=not _json_mode(),
            model=model,
            dimensions=dimensions,
            precision=precision,
            input_type=input_type,
            chunk_size=chunk_size,
            display_name=display_name,
            **_corpus_args(corpus, server_path, by_reference),
        )
        err_console.print(f"wrote {path}")


@main.group()
def jobs() -> None:
    """List, inspect, follow, cancel and resume jobs."""


@jobs.command("list")
@click.option("--state", type=click.Choice([s.value for s in JobState], case_sensitive=False), default=None)
@click.option("--limit", default=20, show_default=True)
@click.pass_context
@_fail_cleanly
def jobs_list(ctx: click.Context, state: str | None, limit: int) -> None:
    """The newest jobs first (--state to filter)."""
    with _client(ctx) as client:
        listed = list(itertools.islice(client.list_jobs(JobState(state.upper()) if state else None), limit))
    _emit(listed, lambda: console.print(_jobs_table(listed)))


def _jobs_table(listed: list[Any]) -> Table:
    table = Table("id", "kind", "state", "done/total", "failed", "docs/s", "name")
    for job in listed:
        table.add_row(
            job.id,
            job.kind,
            job.state.value,
            f"{job.done}/{job.total}",
            str(job.failed),
            f"{job.docs_per_second:.0f}",
            job.display_name,
        )
    return table


@jobs.command("get")
@click.argument("job_id")
@click.pass_context
@_fail_cleanly
def jobs_get(ctx: click.Context, job_id: str) -> None:
    with _client(ctx) as client:
        _show_job(client.get_job(job_id))


@jobs.command("watch")
@click.argument("job_id")
@click.pass_context
@_fail_cleanly
def jobs_watch(ctx: click.Context, job_id: str) -> None:
    with _client(ctx) as client:
        _exit_for(client.wait(job_id, progress=not _json_mode()))


@jobs.command("cancel")
@click.argument("job_id")
@click.pass_context
@_fail_cleanly
def jobs_cancel(ctx: click.Context, job_id: str) -> None:
    with _client(ctx) as client:
        _show_job(client.cancel_job(job_id))


@jobs.command("resume")
@click.argument("job_id")
@click.pass_context
@_fail_cleanly
def jobs_resume(ctx: click.Context, job_id: str) -> None:
    """Run a FAILED or CANCELLED job's chunks that are not done."""
    with _client(ctx) as client:
        _show_job(client.resume_job(job_id))


@main.command()
@click.pass_context
@_fail_cleanly
def models(ctx: click.Context) -> None:
    """The registered models and how many workers host each."""
    with _client(ctx) as client:
        listed = client.list_models()
    _emit(listed, lambda: console.print(_models_table(listed)))


def _models_table(listed: list[Any]) -> Table:
    table = Table("name", "role", "dims", "mrl dims", "max tokens", "version", "origin", "workers", "default")
    for m in listed:
        table.add_row(
            m.name,
            m.role,
            str(m.dimensions),
            ",".join(map(str, m.matryoshka_dimensions)) or "-",
            str(m.max_seq_length),
            m.version[:23],
            m.origin,
            str(m.workers),
            "yes" if m.is_default else "",
        )
    return table


@main.command()
@click.pass_context
@_fail_cleanly
def status(ctx: click.Context) -> None:
    """Workers (their models and device), queue depth and active jobs, from the job store."""
    with _client(ctx) as client:
        now = client.status()
    _emit(now, lambda: _print_status(now))


def _print_status(now: Any) -> None:
    workers = Table("worker", "device", "models", "metrics", title="workers", title_justify="left")
    for w in now.workers:
        models_text = ", ".join(f"{name} ({version[:19]})" for name, version in sorted(w.models.items()))
        workers.add_row(w.worker_id, w.device or "-", models_text or "-", w.metrics_address or "-")
    console.print(workers)
    console.print(
        f"queue: {now.parts_queued} chunk(s) waiting, {now.parts_running} running; {now.active_jobs} active job(s)"
    )
    if now.jobs:
        jobs_table = Table("id", "kind", "state", "done/total", "chunks", "name", title="active jobs")
        for job in now.jobs:
            jobs_table.add_row(
                job.id,
                job.kind,
                job.state.value,
                f"{job.done}/{job.total}",
                f"{job.chunks_finished}/{job.chunks_total}",
                job.display_name,
            )
        console.print(jobs_table)


def _int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


def _show_metrics(job: Any) -> None:
    if _json_mode():
        return  # the job, metrics and outputs included, is printed by _exit_for
    table = Table("metric", "value", title=f"{job.kind} job {job.id[:8]}", title_justify="left")
    for name, value in sorted(job.metrics.items()):
        table.add_row(name, f"{value:.4f}")
    console.print(table)
    for name, value in sorted(job.outputs.items()):
        console.print(f"{name}: {value}")


@main.command()
@click.argument("student")
@click.option("--texts", "texts_path", default=None, help="Training texts: a local JSONL/Parquet corpus (its text).")
@click.option("--server-path", default="", help="Training texts: a corpus file on the gateway instead.")
@click.option("--teacher", default="", help="Teacher model name or role (default: the 'teacher' role).")
@click.option("--keep-layers", default=0, show_default=True, help="Transformer layers the student keeps (0 = half).")
@click.option(
    "--steps",
    default=0,
    show_default=True,
    help="Optimizer steps (0 = three passes over the texts; stops early when held-out agreement stalls).",
)
@click.option("--batch-size", default=0, help="Texts per step (0 = 32).")
@click.option("--learning-rate", default=0.0, help="0 = 5e-4.")
@click.option("--mrl-dims", default="", help="Comma-separated Matryoshka dimensions, e.g. 128,64.")
@click.option("--min-quality", default=0.0, help="Gate: fraction of the teacher's quality to keep (0 = 0.95).")
@click.option("--eval-limit", default=0, help="Evaluation queries for the gate (0 = server default).")
@click.pass_context
@_fail_cleanly
def distill(
    ctx: click.Context,
    student: str,
    texts_path: str | None,
    server_path: str,
    teacher: str,
    keep_layers: int,
    steps: int,
    batch_size: int,
    learning_rate: float,
    mrl_dims: str,
    min_quality: float,
    eval_limit: int,
) -> None:
    """Distil STUDENT from a teacher on a worker; promote it if it passes the quality gate."""
    from embedfleet.client.requests import iter_documents

    texts = [d.text for d in iter_documents(texts_path)] if texts_path else []
    with _client(ctx) as client:
        job = client.submit_distill(
            student,
            texts,
            teacher=teacher,
            keep_layers=keep_layers,
            server_path=server_path,
            max_steps=steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            matryoshka_dimensions=_int_list(mrl_dims),
            min_quality_fraction=min_quality,
            eval_limit=eval_limit,
        )
        final = client.wait(job.id, progress=not _json_mode())
        _show_metrics(final)
        _exit_for(final)


@main.command("eval")
@click.argument("model")
@click.option("--dims", default="", help="Comma-separated Matryoshka dimensions (default: all the model lists).")
@click.option("--teacher", default="", help="Also measure agreement with this model.")
@click.option("--eval-limit", default=0, help="Evaluation queries (0 = server default).")
@click.pass_context
@_fail_cleanly
def eval_command(ctx: click.Context, model: str, dims: str, teacher: str, eval_limit: int) -> None:
    """Score MODEL on the labelled data: Spearman vs humans, recall@10 and nDCG@10, per dimension."""
    with _client(ctx) as client:
        job = client.submit_evaluate(model, dimensions=_int_list(dims), teacher=teacher, eval_limit=eval_limit)
        final = client.wait(job.id, progress=not _json_mode())
        _show_metrics(final)
        _exit_for(final)


def _print_hits(query: str, hits: list[Any]) -> None:
    _emit({"query": query, "hits": hits}, lambda: console.print(_hits_table(query, hits)))


def _hits_table(query: str, hits: list[Any]) -> Table:
    table = Table("score", "id", "text", title=f"search: {query!r}", title_justify="left")
    for hit in hits:
        table.add_row(f"{hit.score:.3f}", hit.id, hit.text[:100])
    return table


@main.command()
@click.argument("collection")
@click.argument("query")
@click.option("--top-k", default=5, show_default=True)
@click.option("--filter", "filter_expr", default="", help="Milvus filter over metadata.")
@click.option(
    "--mode",
    type=click.Choice(["full", "funnel", "binary"]),
    default="full",
    show_default=True,
    help="full vector; Matryoshka funnel (prefix field, then rescoring); binary (bits, then rescoring).",
)
@click.option("--candidates", default=0, help="Shortlist size for funnel/binary (0: 10 x top-k).")
@click.pass_context
@_fail_cleanly
def search(
    ctx: click.Context, collection: str, query: str, top_k: int, filter_expr: str, mode: str, candidates: int
) -> None:
    """Nearest documents to QUERY in COLLECTION.

    Example: embedfleet search docs "what is a cat?" --mode funnel --candidates 200
    """
    with _client(ctx) as client:
        hits = client.search(collection, query, top_k=top_k, filter=filter_expr, mode=mode, candidates=candidates)
        _print_hits(query, hits)


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path(".embedfleet/demo"), show_default=True)
@click.option("--redis-url", envvar="REDIS_URL", default="redis://127.0.0.1:6379/0", show_default=True)
@_fail_cleanly
def demo(data_dir: Path, redis_url: str) -> None:
    """Start the local system, index 1,000 WordNet definitions, search them, and stop."""
    from embedfleet.client.sdk import EmbedfleetClient
    from embedfleet.local import LocalCluster

    corpus = resources.files("embedfleet") / "data" / SAMPLE_CORPUS
    prefix = f"embedfleet-demo-{uuid.uuid4().hex[:8]}:"
    err_console.print("starting Milvus Lite, a Celery worker and the gateway on 127.0.0.1 (auth off) ...")
    with (
        LocalCluster(
            data_dir=data_dir,
            redis_url=redis_url,
            key_prefix=prefix,
            gateway_port=0,
            milvus_port=0,
            log_dir=data_dir / "logs",
        ) as cluster,
        EmbedfleetClient(cluster.gateway_address) as client,
    ):
        for m in client.list_models():
            err_console.print(f"model {m.name}: {m.dimensions}-d, {m.role}, version {m.version[:19]}")
        job = client.index(
            Path(str(corpus)), collection="quickstart", progress=not _json_mode(), display_name="quickstart"
        )
        _show_job(job)
        if job.state != JobState.SUCCEEDED:
            sys.exit(1)
        for query in ("a large wild cat", "something sweet to eat", "a tool for cutting wood"):
            _print_hits(query, client.search("quickstart", query, top_k=3))
        result = client.embed(["The cat sat on the mat.", "A kitten rested on the rug.", "Stock prices fell."])
        sims = result.vectors @ result.vectors.T
        console.print(f"Embed similarity: cat~kitten {sims[0, 1]:.3f}, cat~stocks {sims[0, 2]:.3f}")
        cluster.clear_redis()
    err_console.print("stopped; Milvus data kept in " + str(data_dir / "milvus"))


# -- collections -------------------------------------------------------------------------------
@main.group()
def collections() -> None:
    """List, inspect and delete your collections (the Milvus collections index jobs filled)."""


def _collections_table(listed: list[Any]) -> Table:
    table = Table("name", "model", "dims", "extra fields", "index", "rows", "active jobs")
    for c in listed:
        extra = ", ".join(f.describe() for f in c.fields) or "-"
        table.add_row(
            c.name,
            c.model,
            str(c.dimensions),
            extra,
            c.index.type,
            str(c.row_count),
            ", ".join(c.active_job_ids) or "-",
        )
    return table


@collections.command("list")
@click.pass_context
@_fail_cleanly
def collections_list(ctx: click.Context) -> None:
    """Your collections with their model, fields, index, rows and active jobs."""
    with _client(ctx) as client:
        listed = client.list_collections()
    _emit(listed, lambda: console.print(_collections_table(listed)))


@collections.command("get")
@click.argument("name")
@click.pass_context
@_fail_cleanly
def collections_get(ctx: click.Context, name: str) -> None:
    """One collection: embedfleet collections get docs"""
    with _client(ctx) as client:
        found = client.get_collection(name)
    _emit(found, lambda: console.print(_collections_table([found])))


@collections.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@_fail_cleanly
def collections_delete(ctx: click.Context, name: str, yes: bool) -> None:
    """Drop a collection and all its rows; cannot be undone: embedfleet collections delete docs --yes"""
    if not yes:
        click.confirm(f"Drop collection {name!r} and all its rows?", abort=True, err=True)
    with _client(ctx) as client:
        gone = client.delete_collection(name)
    _emit(gone, lambda: console.print(f"deleted collection {gone.name} ({gone.row_count} rows of {gone.model})"))


# -- API keys ----------------------------------------------------------------------------------
@main.group()
def keys() -> None:
    """Create, list and revoke API keys of your tenant (needs an admin key)."""


def _key_line(key: Any) -> str:
    return f"{key.key_id}  {key.role.value:6}  tenant {key.tenant}  {key.name}"


def _show_key(key: Any) -> None:
    _emit(key, lambda: console.print(_key_line(key)))


@keys.command("create")
@click.option("--role", type=click.Choice(["reader", "writer", "admin"]), default="reader", show_default=True)
@click.option("--name", default="", help="A label for the key (who or what uses it).")
@click.option(
    "--bootstrap",
    is_flag=True,
    help="Write the key straight to Redis (EMBEDFLEET_REDIS_URL, EMBEDFLEET_KEY_PREFIX), without a gateway: "
    "how the first admin key of a tenant is made.",
)
@click.option("--tenant", default="", help="With --bootstrap: the tenant the key acts for.")
@click.pass_context
@_fail_cleanly
def keys_create(ctx: click.Context, role: str, name: str, bootstrap: bool, tenant: str) -> None:
    """Make a key and print it once: only a salted hash is kept, so store it now."""
    if bootstrap:
        import redis

        from embedfleet.apikeys import KeyStore, Role
        from embedfleet.settings import CommonSettings

        if not tenant:
            raise click.UsageError("--bootstrap needs --tenant")
        settings = CommonSettings()
        key, secret = KeyStore(redis.Redis.from_url(settings.redis_url), settings.key_prefix).create(
            tenant, Role(role), name
        )
        logging.getLogger("embedfleet.audit").info(
            json.dumps(
                {"audit": "key.create", "via": "bootstrap", "target": key.key_id, "tenant": tenant, "role": role}
            )
        )
    else:
        if tenant:
            raise click.UsageError("--tenant is for --bootstrap; a gateway makes keys for the caller's own tenant")
        with _client(ctx) as client:
            created = client.create_key(role, name)
        key, secret = created.key, created.secret
    _emit({"key": key, "secret": secret}, lambda: _print_new_key(key, secret))


def _print_new_key(key: Any, secret: str) -> None:
    console.print(_key_line(key))
    err_console.print("The key, shown this once (only a hash is stored):")
    click.echo(secret)


@keys.command("list")
@click.pass_context
@_fail_cleanly
def keys_list(ctx: click.Context) -> None:
    """Your tenant's keys: ids, roles and names (never secrets)."""
    with _client(ctx) as client:
        listed = client.list_keys()
    _emit(listed, lambda: console.print("\n".join(_key_line(key) for key in listed)))


@keys.command("revoke")
@click.argument("key_id")
@click.pass_context
@_fail_cleanly
def keys_revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke a key by id: it stops working at once on every gateway."""
    with _client(ctx) as client:
        _show_key(client.revoke_key(key_id))


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(embedfleet completion bash)"."""
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None
    click.echo(completer(main, {}, "embedfleet", "_EMBEDFLEET_COMPLETE").source())


@main.command()
@click.argument("collection")
@click.option("--threshold", type=float, default=0.9, show_default=True, help="Cosine at or above which rows pair.")
@click.option("--mode", type=click.Choice(["partitioned", "exact"]), default="partitioned", show_default=True)
@click.option("--policy", type=click.Choice(["first", "nearest", "longest"]), default="first", show_default=True)
@click.option("--filter", "filter_expr", default="", help="Milvus filter selecting the rows to deduplicate.")
@click.option("--partitions", default=0, help="k-means partitions (0: about sqrt(rows)).")
@click.option("--n-probe", default=0, help="Partitions each row probes (0: 3).")
@click.option("--no-text-pass", is_flag=True, help="Skip pairing identical normalized texts first.")
@click.option("--mutual", is_flag=True, help="Keep only reciprocal best matches before grouping (fewer chains).")
@click.option("--delete", is_flag=True, help="Delete the removed rows from the collection (default: a dry run).")
@click.option("-o", "--output", default="", help="Also export the groups to a .parquet or .jsonl file.")
@click.option("--no-wait", is_flag=True, help="Print the job id and return at once.")
@click.pass_context
@_fail_cleanly
def dedup(
    ctx: click.Context,
    collection: str,
    threshold: float,
    mode: str,
    policy: str,
    filter_expr: str,
    partitions: int,
    n_probe: int,
    no_text_pass: bool,
    mutual: bool,
    delete: bool,
    output: str,
    no_wait: bool,
) -> None:
    """Find near-duplicate rows of COLLECTION (a dry run unless --delete).

    Example: embedfleet dedup docs --threshold 0.9 -o groups.parquet
    """
    with _client(ctx) as client:
        job = client.submit_dedup(
            collection,
            threshold,
            mode=mode,
            policy=policy,
            filter=filter_expr,
            partitions=partitions,
            n_probe=n_probe,
            text_pass=not no_text_pass,
            mutual=mutual,
            delete=delete,
        )
        if no_wait:
            _emit(job, lambda: console.print(job.id))
            return
        final = client.wait(job.id, progress=not _json_mode())
        _show_metrics(final)
        if output and final.state == JobState.SUCCEEDED:
            count = client.export_dedup_groups(job.id, output)
            err_console.print(f"wrote {count} groups to {output}")
        _exit_for(final)


@main.command("dedup-export")
@click.argument("job_id")
@click.option("-o", "--output", required=True, help="A .parquet or .jsonl file.")
@click.pass_context
@_fail_cleanly
def dedup_export(ctx: click.Context, job_id: str, output: str) -> None:
    """Write a succeeded dedup job's groups (kept id, removed ids, similarities) to a file."""
    with _client(ctx) as client:
        count = client.export_dedup_groups(job_id, output)
        _emit(
            {"job_id": job_id, "groups": count, "output": output},
            lambda: console.print(f"wrote {count} groups to {output}"),
        )


# -- clustering -------------------------------------------------------------------------------
def _show_clusters(clusters: list[Any], title: str) -> None:
    _emit({"clusters": clusters}, lambda: console.print(_clusters_table(clusters, title)))


def _clusters_table(clusters: list[Any], title: str) -> Table:
    table = Table("cluster", "size", "top terms", "nearest the centre", title=title, title_justify="left")
    for c in clusters:
        nearest = c.representatives[0].text[:70] if c.representatives else ""
        table.add_row(str(c.cluster), str(c.size), ", ".join(t for t, _ in c.terms[:6]), nearest)
    return table


@main.command()
@click.argument("collection")
@click.option("--method", type=click.Choice(["kmeans", "hdbscan"]), default="kmeans", show_default=True)
@click.option("-k", "--k", "k", default=0, help="Clusters (k-means); 0 chooses k by silhouette in --k-min..--k-max.")
@click.option("--k-min", default=0, help="Smallest k tried when choosing (0 = 2).")
@click.option("--k-max", default=0, help="Largest k tried when choosing (0 = 30).")
@click.option(
    "--filter", "filter_expr", default="", help="Milvus filter choosing the rows, e.g. 'metadata[\"a\"] > 1'."
)
@click.option("--sample-size", default=0, help="Vectors k-means trains on (0 = 100,000).")
@click.option("--min-cluster-size", default=0, help="HDBSCAN: smallest cluster (0 = 10).")
@click.option("--min-samples", default=0, help="HDBSCAN: neighbours of a core point (0 = min cluster size).")
@click.option("--top-terms", default=0, help="c-TF-IDF terms per cluster (0 = 10).")
@click.option("--model", default="", help="Refuse unless the collection was filled by this model.")
@click.option("--seed", default=0, help="Seed of sampling and k-means (0 = 1).")
@click.option("--no-wait", is_flag=True, help="Print the job id and return at once.")
@click.pass_context
@_fail_cleanly
def cluster(
    ctx: click.Context,
    collection: str,
    method: str,
    k: int,
    k_min: int,
    k_max: int,
    filter_expr: str,
    sample_size: int,
    min_cluster_size: int,
    min_samples: int,
    top_terms: int,
    model: str,
    seed: int,
    no_wait: bool,
) -> None:
    """Cluster COLLECTION's vectors on a worker; print the clusters (size, top terms, a typical document).

    Example: embedfleet cluster docs -k 20, then embedfleet cluster-map JOB -o map.html
    """
    with _client(ctx) as client:
        job = client.submit_cluster(
            collection,
            method=method,
            k=k,
            k_min=k_min,
            k_max=k_max,
            filter=filter_expr,
            sample_size=sample_size,
            min_cluster_size=min_cluster_size,
            min_samples=min_samples,
            top_terms=top_terms,
            model=model,
            seed=seed,
        )
        if no_wait:
            _show_job(job)
            return
        final = client.wait(job.id, progress=not _json_mode())
        if final.state == JobState.SUCCEEDED and not _json_mode():
            _show_clusters(client.clusters(final.id), f"cluster job {final.id} on {collection}")
        _exit_for(final)


@main.command()
@click.argument("job_id")
@click.option("--rows", "rows_path", default=None, help="Also write every row's cluster to this .jsonl file.")
@click.pass_context
@_fail_cleanly
def clusters(ctx: click.Context, job_id: str, rows_path: str | None) -> None:
    """Show a finished cluster job's clusters; optionally export the row assignments."""
    with _client(ctx) as client:
        _show_clusters(client.clusters(job_id), f"cluster job {job_id}")
        if rows_path:
            with open(rows_path, "w", encoding="utf-8") as out:
                for row in client.cluster_assignments(job_id):
                    out.write(json.dumps(dataclasses.asdict(row), ensure_ascii=False) + "\n")
            err_console.print(f"rows written to {rows_path}")


@main.command("cluster-map")
@click.argument("job_id")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path), help="map.png or map.html")
@click.option("--title", default="", help="Title of the picture.")
@click.pass_context
@_fail_cleanly
def cluster_map(ctx: click.Context, job_id: str, output: Path, title: str) -> None:
    """Draw a cluster job's map: a 2-D projection of a sample, coloured and labelled by cluster.

    The .html file is self-contained and shows each document's text on hover.
    """
    from embedfleet.client.cluster_map import render

    with _client(ctx) as client:
        drawn = render(client.cluster_map(job_id), output, title)
    _emit({"output": str(drawn)}, lambda: console.print(f"map written to {drawn}"))


if __name__ == "__main__":
    main()
