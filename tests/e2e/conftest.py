"""Everything under tests/e2e runs against the real system (Redis, Celery/Ray, Milvus Lite, the real
model): marked ``e2e`` so ``pytest -m "not e2e"`` gives the fast layer alone."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)
