"""A corpus by reference, gateway side: where the reference may point, and planning it.

A reference is a path inside the dataset store (relative, or a URI under the store's), or an
absolute path under the gateway's allowed corpus dirs; anything else is refused before a file is
opened. Planning reads Parquet footers (and, when parts are sized by tokens, the text column's lengths)
and counts JSONL lines in one pass, parsing none: the workers read and validate the records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow.fs as pafs

from embedfleet import errors
from embedfleet.corpus_refs import expand, glob_base, plan_reference
from embedfleet.datastore import has_scheme, relative_path
from embedfleet.domain import CorpusFormat, CorpusRef
from embedfleet.gateway import tenancy
from embedfleet.gateway.context import GatewayContext

LOCAL_FILESYSTEM = "file:///"
_FIELD = "config.source.uri"


@dataclass(frozen=True)
class CorpusReference:
    """What a request says about a corpus by reference (``CorpusSource.uri`` and its options)."""

    uri: str
    format: CorpusFormat | None = None
    id_column: str = ""
    text_column: str = ""
    metadata_column: str = ""


def store_path(ctx: GatewayContext, uri: str, field: str) -> str:
    """The path inside the dataset store that a relative path, or a URI under the store's, names."""
    store = ctx.datastore
    area = tenancy.data_path("")  # "" with auth off, else the tenant's area of the store
    if has_scheme(uri):
        base = store.uri.split("?")[0].rstrip("/") + "/" + area
        if not uri.startswith(base):
            raise errors.FailedPrecondition(
                f"{uri!r} is not in this gateway's dataset store ({base}); copy the corpus there, use a "
                "path relative to the store, or (for corpora) a path under the allowed corpus dirs"
            )
        uri = uri.removeprefix(base)
    return store.path(tenancy.data_path(relative_path(uri, field)), field)


def resolve_reference(
    ctx: GatewayContext, reference: CorpusReference, row_bytes: Callable[[int], None] | None = None
) -> CorpusRef:
    """The reference's files, counted, as the spec carries them for the workers (each row's size to
    ``row_bytes`` on the way, see ``plan_reference``)."""
    uri = reference.uri
    if uri.startswith("/"):
        ctx.allowed_path(glob_base(uri))  # before listing anything: a glob may not walk outside
        filesystem = LOCAL_FILESYSTEM
        paths = expand(pafs.LocalFileSystem(), uri, uri)
        for path in paths:
            ctx.allowed_path(path)  # a match that links out of the allowed dirs is refused too
    else:
        filesystem = ctx.datastore.uri
        paths = expand(ctx.datastore.fs, store_path(ctx, uri, _FIELD), uri)
    columns = (reference.id_column or "id", reference.text_column or "text", reference.metadata_column or "metadata")
    limits = ctx.settings
    return plan_reference(
        filesystem, paths, reference.format, columns, limits.max_text_bytes, limits.max_metadata_bytes, row_bytes
    )
