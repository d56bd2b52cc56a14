"""The dataset store: where corpora by reference live and where the system writes job data.

One URI (``EMBEDFLEET_DATA_URI``) names it for every process: a local directory by default, a shared
volume or any filesystem ``pyarrow.fs`` opens (``s3://``, ``gs://``, ``hdfs://``) in a cluster, and any
other fsspec protocol through pyarrow's fsspec bridge. Paths inside it are derived only from validated
ids or checked relative paths, never joined from a client's string as given, so a request cannot
reach outside it.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from embedfleet.errors import InvalidArgument

_JOB_ID = re.compile(r"[0-9a-f]{32}")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def has_scheme(uri: str) -> bool:
    return bool(_SCHEME.match(uri))


def open_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem a URI names and the path inside it: a plain path is a local directory (made
    absolute, so every process resolves it alike), a scheme pyarrow knows opens natively, any other
    goes through fsspec (``memory://``, ``gcs://`` with gcsfs installed, ...)."""
    if not has_scheme(uri) or uri.startswith("file://"):
        local = Path(uri.removeprefix("file://")).expanduser().resolve()
        return pafs.LocalFileSystem(), local.as_posix()
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, NotImplementedError):  # pyarrow's ArrowInvalid: a scheme it has no filesystem for
        import fsspec.core  # only a non-pyarrow filesystem needs fsspec

        fs, path = fsspec.core.url_to_fs(uri)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def location_uri(filesystem: str, path: str) -> str:
    """A URI a person (or pyarrow) can open for ``path`` on the filesystem ``filesystem`` names."""
    if not has_scheme(filesystem) or filesystem.startswith("file://"):
        return path
    scheme = filesystem.split("://", 1)[0]
    return f"{scheme}://{path.lstrip('/')}"


def relative_path(path: str, field: str) -> str:
    """A relative path that stays inside its root (no ``..`` escape, no absolute part)."""
    cleaned = posixpath.normpath(path.replace("\\", "/"))
    if cleaned.startswith(("/", "..")) or cleaned == ".":
        raise InvalidArgument(f"{path!r} must be a path inside the dataset store, without '..'", field)
    return cleaned


def check_job_id(job_id: str) -> str:
    if not _JOB_ID.fullmatch(job_id):
        raise InvalidArgument(f"{job_id!r} is not a job id", "job_id")
    return job_id


@contextmanager
def replacing(fs: pafs.FileSystem, path: str) -> Iterator[pa.NativeFile]:
    """An output stream for ``path``, written under a temporary name and moved into place on success:
    a reader never sees half a file, and a retried part replaces its own file instead of adding one."""
    fs.create_dir(posixpath.dirname(path))
    temporary = f"{path}.tmp"
    with fs.open_output_stream(temporary) as out:
        yield out
    fs.move(temporary, path)


def count_parts(fs: pafs.FileSystem, directory: str) -> int:
    """How many ``part-*.parquet`` files a directory holds: how a part that cannot know it is last
    tells that every part's file is in place."""
    selector = pafs.FileSelector(directory, allow_not_found=True)
    return sum(1 for f in fs.get_file_info(selector) if f.base_name.startswith("part-") and f.extension == "parquet")


class DataStore:
    """The dataset store of a deployment, opened once per process."""

    def __init__(self, uri: str) -> None:
        self.fs, self.root = open_filesystem(uri)
        # What a worker opens again to reach the same files: a plain directory made absolute.
        self.uri = uri if has_scheme(uri) else self.root

    def path(self, relative: str, field: str = "path") -> str:
        """The full path of a checked relative path inside the store."""
        return f"{self.root.rstrip('/')}/{relative_path(relative, field)}"

    def contains(self, path: str) -> bool:
        root = self.root.rstrip("/") + "/"
        return posixpath.normpath(path).startswith(root)

    def job_dir(self, job_id: str) -> str:
        """Where the system keeps one job's data (spilled shards, results)."""
        return f"{self.root.rstrip('/')}/jobs/{check_job_id(job_id)}"

    def remove_job(self, job_id: str) -> None:
        """Delete a job's data (an absent directory is fine: nothing was written)."""
        path = self.job_dir(job_id)
        if self.fs.get_file_info(path).type != pafs.FileType.NotFound:
            self.fs.delete_dir(path)
