"""Python client SDK (sync and asyncio) and the ``embedfleet`` command line. No torch needed."""

from embedfleet.client.aio import AsyncEmbedfleetClient
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.client.types import EmbedResult, Job, ModelInfo, SearchHit

__all__ = ["AsyncEmbedfleetClient", "EmbedResult", "EmbedfleetClient", "Job", "ModelInfo", "SearchHit"]
