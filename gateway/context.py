"""What every capability of the gateway shares: settings, the job store, the queue, Milvus, the
registry, and the rules for resolving a request's model and reading server-side corpora.

One instance per gateway process; the capability cores (jobs, embed, models, search) each take it.
Nothing here knows gRPC.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from embedfleet import errors, milvus, milvus_engine
from embedfleet.corpus import read_corpus
from embedfleet.datastore import DataStore
from embedfleet.domain import Document, EmbeddingOptions
from embedfleet.gateway import tenancy
from embedfleet.gateway.queue import Dispatcher
from embedfleet.gateway.settings import GatewaySettings
from embedfleet.jobstore import JobStore
from embedfleet.milvus_engine import MilvusEngine
from embedfleet.registry import ModelRegistry, ModelSpec

T = TypeVar("T")


@dataclass(frozen=True)
class ResolvedModel:
    """A request's model as the gateway resolved it once, for the job spec and the workers."""

    spec: ModelSpec
    options: EmbeddingOptions  # with ``model`` set to the registry name
    output_dimensions: int

    @property
    def version(self) -> str:
        """The registry's pin ("" when the entry is unpinned)."""
        return self.spec.checksum or self.spec.revision


@dataclass
class GatewayContext:
    settings: GatewaySettings
    store: JobStore
    dispatcher: Dispatcher
    milvus_factory: Callable[[], MilvusClient]
    _milvus: MilvusClient | None = field(default=None, init=False)
    _milvus_lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def registry(self) -> ModelRegistry:
        return self.settings.registry()

    def milvus_client(self) -> MilvusClient:
        """One client per gateway, connected on first use."""
        with self._milvus_lock:
            if self._milvus is None:
                self._milvus = self.milvus_factory()
            return self._milvus

    def on_milvus(self, call: Callable[[MilvusClient], T]) -> T:
        """``call`` with the gateway's Milvus client; a Milvus error is UNAVAILABLE, naming the server."""
        try:
            return call(self.milvus_client())
        except MilvusException as exc:
            raise errors.Unavailable(f"cannot reach Milvus at {self.settings.milvus_uri}: {exc.message}") from None

    def binding(self, collection: str) -> milvus.CollectionBinding | None:
        """The collection's binding (None if it does not exist); Milvus outages are UNAVAILABLE."""
        milvus.validate_collection_name(collection)
        return self.on_milvus(lambda client: milvus.read_binding(client, collection))

    def collection(self, name: str) -> str:
        """The Milvus collection the caller means by ``name``: its tenant's (see ``tenancy``)."""
        milvus.validate_collection_name(name)
        return tenancy.collection_name(name)

    def engine(self) -> MilvusEngine:
        """What the Milvus behind ``milvus_uri`` supports (asked per call: a server may be upgraded)."""
        return self.on_milvus(milvus_engine.detect)

    def resolve(self, options: EmbeddingOptions) -> ResolvedModel:
        """Options with the model resolved to a registry name; unknown models and dimensions refused."""
        spec = self.visible_model(self.registry.resolve(options.model))
        dims = spec.output_dimensions(options.dimensions)
        return ResolvedModel(spec, options.model_copy(update={"model": spec.name}), dims)

    def visible_model(self, spec: ModelSpec) -> ModelSpec:
        """``spec``, if the caller may use it: another tenant's promoted model is NOT_FOUND."""
        if not tenancy.may_use_model(spec.name, {m.name for m in self.settings.models}):
            raise errors.NotFound(f"model {spec.name!r} is not in the registry; `embedfleet models` lists the models")
        return spec

    @functools.cached_property
    def datastore(self) -> DataStore:
        """The dataset store (EMBEDFLEET_DATA_URI), opened on first use."""
        return DataStore(self.settings.data_uri)

    def allowed_path(self, path: str) -> Path:
        """A gateway-side path the client named, if it lies under the allowed corpus directories."""
        return corpus_path(path, self.settings.allowed_corpus_dirs)

    def server_corpus(self, path: str) -> Iterator[Document]:
        """A corpus file on the gateway's side, only under the allowed directories (see ``corpus_path``)."""
        return read_corpus(self.allowed_path(path))


def corpus_path(path: str, allowed_dirs: tuple[Path, ...]) -> Path:
    """The client's ``source.path`` as a path the gateway may open, or a refusal that tells nothing about
    the gateway's filesystem outside ``allowed_dirs``.

    Only absolute paths are taken: a relative one would be read against the gateway's working
    directory, which no client chose. The path is checked lexically first, so nothing outside the
    allowed directories is ever looked at, then again with symlinks resolved, so none leads out. The
    path returned is the client's own, normalized: errors quote what was sent, not where it led.
    """
    field = "config.source.path"
    if not allowed_dirs:
        raise errors.FailedPrecondition(
            "this gateway does not read server-side corpus files (EMBEDFLEET_ALLOWED_CORPUS_DIRS is "
            "empty); stream the documents instead"
        )
    if "\x00" in path:
        raise errors.InvalidArgument("source.path contains a NUL byte, which no file name can", field)
    given = Path(os.path.normpath(path))
    if not given.is_absolute():
        raise errors.InvalidArgument(
            f"source.path {errors.echo(path)} is relative; give the absolute path of a file under one of the "
            "gateway's corpus directories",
            field,
        )
    roots = [Path(os.path.normpath(os.path.abspath(d))) for d in allowed_dirs]
    outside = errors.FailedPrecondition(f"corpus path {errors.echo(path)} is outside the gateway's allowed corpus dirs")
    if not any(given.is_relative_to(root) for root in roots):
        raise outside
    try:
        target = given.resolve()
    except RuntimeError:  # a symlink loop, inside the allowed dirs
        raise errors.NotFound(f"corpus file {errors.echo(path)} cannot be opened (a symlink loop)") from None
    if not any(target.is_relative_to(root.resolve()) for root in roots):
        raise outside
    return given
