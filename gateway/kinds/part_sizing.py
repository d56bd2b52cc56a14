"""How many documents go in a part: by estimated tokens unless the request fixes a count.

A part's cost is its tokens, not its documents: 256 titles take a fraction of the time of 256 long
paragraphs, so count-sized parts are either too small to sort well (titles; the queue's overhead per
part dominates) or too long for a lease or a visibility timeout (long texts). When a request leaves
``chunk_size`` unset, a part is closed once its documents' estimated tokens (each capped at the model's
window, as the worker will truncate it) reach ``part_tokens``, or at ``max_chunk_size`` documents. The
estimate reads only the text's length (about 4 bytes of English per WordPiece token), so the gateway
never loads a tokenizer; a part is a cost target, not an exact budget: the workers cut their batches
by real tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from embedfleet import errors
from embedfleet.gateway.settings import GatewaySettings

# all-MiniLM-L6-v2 WordPiece on Brown paragraphs + Lee news: 4.6 bytes a token (bench/engine.py), so 4
# slightly over-counts: parts come out a little smaller than part_tokens, never larger.
BYTES_PER_TOKEN = 4
SPECIAL_TOKENS = 2  # [CLS] and [SEP]


def estimate_tokens(text_bytes: int, window: int) -> int:
    """Tokens the worker will run for a text of ``text_bytes`` UTF-8 bytes: its length over
    ``BYTES_PER_TOKEN``, at most the window."""
    return min(window, SPECIAL_TOKENS + text_bytes // BYTES_PER_TOKEN)


@dataclass(frozen=True)
class PartSizing:
    """At most ``documents`` per part and, when ``tokens`` is not 0, about ``tokens`` estimated tokens."""

    documents: int
    tokens: int = 0
    window: int = 0

    @property
    def by_tokens(self) -> bool:
        return self.tokens > 0


def part_sizing(requested: int, settings: GatewaySettings, window: int) -> PartSizing:
    """A ``chunk_size`` the request sets is a fixed count (checked against the limit); else parts are
    sized by tokens (``part_tokens``), or by ``default_chunk_size`` documents where that is 0."""
    if requested > settings.max_chunk_size:
        raise errors.InvalidArgument(
            f"chunk_size {requested} exceeds the limit {settings.max_chunk_size}", "config.chunk_size"
        )
    if requested:
        return PartSizing(documents=requested)
    if not settings.part_tokens:
        return PartSizing(documents=settings.default_chunk_size)
    return PartSizing(documents=settings.max_chunk_size, tokens=settings.part_tokens, window=window)


class PartCutter:
    """Decides, document by document as they stream in, where each part ends."""

    def __init__(self, sizing: PartSizing) -> None:
        self.sizing = sizing
        self._documents = 0
        self._tokens = 0

    def full_after(self, text_bytes: int) -> bool:
        """Count one more document (its text's UTF-8 length) of the open part; True when the part is
        complete with it."""
        self._documents += 1
        if self.sizing.by_tokens:
            self._tokens += estimate_tokens(text_bytes, self.sizing.window)
        if self._documents >= self.sizing.documents or (self.sizing.by_tokens and self._tokens >= self.sizing.tokens):
            self._documents = self._tokens = 0
            return True
        return False


class PartStarts:
    """The first document of every part of a corpus whose texts' UTF-8 lengths arrive one by one
    (``add``), as a corpus by reference is counted."""

    def __init__(self, sizing: PartSizing) -> None:
        self._cutter = PartCutter(sizing)
        self._starts: list[int] = []
        self._position = 0
        self._opened = False

    def add(self, text_bytes: int) -> None:
        if not self._opened:
            self._starts.append(self._position)
        self._opened = not self._cutter.full_after(text_bytes)
        self._position += 1

    @property
    def starts(self) -> tuple[int, ...]:
        return tuple(self._starts)
