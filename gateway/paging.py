"""ListJobs pages: the size a request may ask for, and the page token (the creation time of the last job
listed, as the job index's score) that the gateway issues and reads back."""

from __future__ import annotations

import math

from embedfleet import errors

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    """0 means the default; anything else must be a size the store can serve in one page."""
    size = requested or DEFAULT_PAGE_SIZE
    if not 0 < size <= MAX_PAGE_SIZE:
        raise errors.InvalidArgument(
            f"page_size must be between 1 and {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})", "page_size"
        )
    return size


def page_start(token: str) -> float | None:
    """Where a page continues: None for the first page, else the score of the last job already seen.

    Only finite numbers are tokens this server issued; "nan" parses as a float but is no Redis score.
    """
    if not token:
        return None
    try:
        score = float(token)
    except ValueError:
        score = math.nan
    if not math.isfinite(score):
        raise errors.InvalidArgument(
            "page_token is not one this server issued; omit it for the first page", "page_token"
        )
    return score


def next_token(score: float | None) -> str:
    """The token of the page after one whose last job had ``score`` ("" when there is none)."""
    return repr(score) if score is not None else ""
