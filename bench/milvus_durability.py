#!/usr/bin/env python
"""Does an acknowledged write survive the Milvus process being killed? Lite and the server, with and
without a flush after each write.

Three writer threads upsert parts of 20 rows (384-d float vectors) into one collection on 127.0.0.1;
after a random 1-3 s the Milvus process is killed with SIGKILL, restarted on the same data directory,
and every part a writer saw acknowledged is looked up. A part with any row missing is lost. The flush
is the worker's own (``embedfleet.milvus.persist``, forced on for this measurement); its cost is the
median time of one flush call while the three writers run, and parts/s is the writers' combined rate.

    .venv/bin/python bench/milvus_durability.py --trials 3

prints a Markdown table and writes it to bench/results/milvus_durability.md.
"""

from __future__ import annotations

import argparse
import random
import shlex
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from embedfleet import milvus
from embedfleet.local import LocalCluster
from embedfleet.milvus_engine import MilvusEngine
from embedfleet.milvus_server import MilvusServerProcess

PART = 20
DIMENSIONS = 384
WRITERS = 3
COLLECTION = "durability"
# Forces persist() to flush whatever engine is behind the client.
NOT_DURABLE = MilvusEngine(lite=True, version=(0,), reported="forced")


class Engine:
    """A Milvus process on 127.0.0.1 that can be killed and restarted on the same data directory."""

    def __init__(self, kind: str, data_dir: Path) -> None:
        self.kind = kind
        self.data_dir = data_dir
        self.lite = LocalCluster(data_dir=data_dir, milvus_port=0, log_dir=data_dir / "logs")
        self.server = MilvusServerProcess(data_dir / "server", stop_grace_s=1)

    @property
    def uri(self) -> str:
        return self.lite.milvus_uri if self.kind == "lite" else self.server.uri

    def start(self) -> None:
        if self.kind == "lite":
            self.lite.start_milvus()
        else:
            self.server.port = 0  # a fresh port: the killed server's may not be free again yet
            self.server.start()

    def kill(self) -> None:
        process = self.lite.processes["milvus"] if self.kind == "lite" else self.server.process
        assert process is not None
        process.kill()
        process.wait()
        if self.kind == "server":
            self.server.stop()

    def stop(self) -> None:
        if self.kind == "lite":
            self.lite.stop()
        else:
            self.server.stop()


@dataclass
class Trial:
    acknowledged: list[int] = field(default_factory=list)
    flush_s: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _writer(uri: str, writer: int, flush: bool, trial: Trial, stop: threading.Event) -> None:
    client = MilvusClient(uri=uri)
    rng = random.Random(writer)
    part = 0
    while not stop.is_set():
        base = (writer * 1_000_000 + part) * PART + 1
        rows = [{"pk": base + i, "vector": [rng.random() for _ in range(DIMENSIONS)]} for i in range(PART)]
        try:
            client.upsert(COLLECTION, rows)
            if flush:
                started = time.perf_counter()
                milvus.persist(client, COLLECTION, NOT_DURABLE)
                with trial.lock:
                    trial.flush_s.append(time.perf_counter() - started)
        except MilvusException:
            return
        with trial.lock:
            trial.acknowledged.append(base)
        part += 1


def run_trial(kind: str, flush: bool, seed: int) -> tuple[int, int, float, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(kind, Path(tmp))
        engine.start()
        try:
            setup = MilvusClient(uri=engine.uri)
            setup.create_collection(COLLECTION, dimension=DIMENSIONS, primary_field_name="pk", auto_id=False)
            trial, stop = Trial(), threading.Event()
            threads = [
                threading.Thread(target=_writer, args=(engine.uri, w, flush, trial, stop)) for w in range(WRITERS)
            ]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            time.sleep(random.Random(seed).uniform(1, 3))
            stop.set()
            engine.kill()
            elapsed = time.perf_counter() - started
            for thread in threads:
                thread.join(60)
            engine.start()
            client = MilvusClient(uri=engine.uri)
            client.load_collection(COLLECTION)
            stored = {row["pk"] for row in client.query(COLLECTION, filter="pk > 0", output_fields=["pk"], limit=16384)}
            lost = sum(1 for base in trial.acknowledged if not all(base + i in stored for i in range(PART)))
            return len(trial.acknowledged), lost, len(trial.acknowledged) / elapsed, trial.flush_s
        finally:
            engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--engines", default="lite,server")
    args = parser.parse_args()
    lines = [
        f"`{shlex.join(['.venv/bin/python', 'bench/milvus_durability.py', *sys.argv[1:]])}`",
        "",
        "| engine | flush after each write | parts acknowledged | parts lost after SIGKILL | parts/s (3 writers) "
        "| flush median ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for kind in args.engines.split(","):
        for flush in (False, True):
            results = [run_trial(kind, flush, seed) for seed in range(args.trials)]
            acked = sum(r[0] for r in results)
            lost = sum(r[1] for r in results)
            rate = statistics.median(r[2] for r in results)
            flushes = [s for r in results for s in r[3]]
            flush_ms = f"{1000 * statistics.median(flushes):.0f}" if flushes else "-"
            line = f"| {kind} | {'yes' if flush else 'no'} | {acked} | {lost} | {rate:.0f} | {flush_ms} |"
            print(line, flush=True)
            lines.append(line)
    out = Path(__file__).with_name("results") / "milvus_durability.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
