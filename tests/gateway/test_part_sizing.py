"""Parts sized by tokens: a part of titles holds many more documents than a part of long paragraphs
and both carry about the same estimated tokens; a chunk_size the request sets is a fixed count."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedfleet import corpus_refs
from embedfleet.corpus_refs import plan_reference
from embedfleet.domain import EmbeddingOptions, EmbedParams, JobSpec, part_range
from embedfleet.errors import InvalidArgument
from embedfleet.gateway.kinds.part_sizing import PartCutter, PartSizing, PartStarts, estimate_tokens, part_sizing
from embedfleet.gateway.settings import GatewaySettings

SETTINGS = GatewaySettings(part_tokens=2000, max_chunk_size=500, default_chunk_size=64)
WINDOW = 256


def _parts(texts: list[str], sizing: PartSizing) -> list[list[str]]:
    cutter = PartCutter(sizing)
    parts: list[list[str]] = [[]]
    for text in texts:
        parts[-1].append(text)
        if cutter.full_after(len(text.encode())):
            parts.append([])
    return [p for p in parts if p]


def test_titles_and_paragraphs_get_parts_of_about_the_same_tokens() -> None:
    sizing = part_sizing(0, SETTINGS, WINDOW)
    assert sizing == PartSizing(documents=500, tokens=2000, window=WINDOW)
    titles = _parts(["The Old Man and the Sea"] * 1000, sizing)
    paragraphs = _parts(
        ["It was a bright cold day in April, and the clocks were striking thirteen. " * 6] * 1000, sizing
    )
    assert len(titles[0]) > 10 * len(paragraphs[0])
    for part in titles[:-1] + paragraphs[:-1]:
        tokens = sum(estimate_tokens(len(t.encode()), WINDOW) for t in part)
        assert SETTINGS.part_tokens <= tokens < SETTINGS.part_tokens + WINDOW
    assert len(_parts(["a"] * 2000, sizing)[0]) == 500  # the document cap still holds for tiny texts


def test_an_estimate_never_passes_the_window() -> None:
    assert estimate_tokens(0, WINDOW) == 2
    assert estimate_tokens(10_000_000, WINDOW) == WINDOW  # the worker truncates it to the window


def test_a_requested_chunk_size_is_a_fixed_count_and_bounded() -> None:
    assert part_sizing(100, SETTINGS, WINDOW) == PartSizing(documents=100)
    assert part_sizing(0, SETTINGS.model_copy(update={"part_tokens": 0}), WINDOW) == PartSizing(documents=64)
    with pytest.raises(InvalidArgument, match="exceeds the limit 500"):
        part_sizing(501, SETTINGS, WINDOW)


@settings(deadline=None)
@given(sizes=st.lists(st.integers(1, 50), min_size=1, max_size=30))
def test_part_starts_name_consecutive_ranges_that_cover_the_corpus(sizes: list[int]) -> None:
    starts = tuple(sum(sizes[:i]) for i in range(len(sizes)))
    spec = JobSpec(params=EmbedParams(), embedding=EmbeddingOptions(model="m"), part_starts=starts)
    total = sum(sizes)
    ranges = [part_range(spec, total, len(sizes), p) for p in range(len(sizes))]
    assert ranges == list(zip(starts, sizes, strict=True))
    assert part_range(spec, total, len(sizes), len(sizes)) == (total, 0)


def _starts(lengths: list[int], sizing: PartSizing) -> tuple[int, ...]:
    sized = PartStarts(sizing)
    for length in lengths:
        sized.add(length)
    return sized.starts


def test_a_parquet_corpus_by_reference_is_sized_from_its_text_column(tmp_path: Path) -> None:
    """Parts by reference: the lengths come from the text column alone, row group by row group, and give
    the same parts as the same texts streamed through the gateway would."""
    texts = ["short title"] * 300 + ["a long paragraph of running text, " * 20] * 100 + [None] * 3
    for name, rows in (("a.parquet", texts[:250]), ("b.parquet", texts[250:])):
        table = pa.table({"id": [f"d{i}" for i in range(len(rows))], "text": rows})
        pq.write_table(table, tmp_path / name, row_group_size=64)
    lengths: list[int] = []
    paths = [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    ref = plan_reference(str(tmp_path), paths, None, ("id", "text", "metadata"), 1 << 20, 65536, lengths.append)
    assert [f.rows for f in ref.files] == [250, 153]
    assert lengths == [len((t or "").encode()) for t in texts]
    sizing = part_sizing(0, SETTINGS, WINDOW)
    starts = _starts(lengths, sizing)
    streamed = _parts([t or "" for t in texts], sizing)
    assert starts == tuple(sum(len(p) for p in streamed[:i]) for i in range(len(streamed)))


def test_a_jsonl_corpus_by_reference_is_sized_from_its_line_lengths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSONL parts by tokens too, from each line's length (no line parsed): the text plus its id and
    JSON syntax, so a part of titles holds many more documents than one of paragraphs, and no part is
    larger than the same texts streamed would make it."""
    import json

    texts = ["short title"] * 300 + ["a long paragraph of running text, " * 20] * 100
    lines = [json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(texts)]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    sizing = part_sizing(0, SETTINGS, WINDOW)
    sized = PartStarts(sizing)
    lengths: list[int] = []
    reads: list[str] = []
    lines_of = corpus_refs._lines
    monkeypatch.setattr(
        corpus_refs, "_lines", lambda fs, path, start=None: reads.append(path) or lines_of(fs, path, start)
    )

    def row_bytes(size: int) -> None:
        lengths.append(size)
        sized.add(size)

    path = str(tmp_path / "c.jsonl")
    ref = plan_reference(str(tmp_path), [path], None, ("id", "text", "metadata"), 1 << 20, 65536, row_bytes)
    assert ref.rows == len(texts) and reads == [path]  # counted and sized in one read
    assert lengths == [len(line) + 1 for line in lines]
    starts = sized.starts
    sizes = [b - a for a, b in zip(starts, (*starts[1:], len(texts)), strict=True)]
    assert sizes[0] > 5 * sizes[-2]  # titles vs paragraphs
    streamed = _parts(texts, sizing)
    assert len(starts) >= len(streamed) and max(sizes) <= max(len(p) for p in streamed)
