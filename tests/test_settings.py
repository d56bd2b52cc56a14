from pathlib import Path

import pytest

from embedfleet.gateway.settings import GatewaySettings
from embedfleet.worker.settings import WorkerSettings


def test_env_config_file_and_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "embedfleet.toml"
    config.write_text(
        'redis_url = "redis://cfg:6379/1"\nport = 6000\nencode_batch_size = 8\n'
        '[[models]]\nname = "m"\nrole = "student"\nsource = "/models/m"\ndimensions = 32\n'
    )
    monkeypatch.setenv("EMBEDFLEET_CONFIG", str(config))
    monkeypatch.setenv("EMBEDFLEET_PORT", "7000")
    gateway = GatewaySettings()
    assert gateway.redis_url == "redis://cfg:6379/1"  # from the file
    assert gateway.port == 7000  # the environment beats the file
    assert gateway.registry().resolve("student").dimensions == 32
    assert WorkerSettings().encode_batch_size == 8  # one file configures every process type


def test_redis_url_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBEDFLEET_REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/2")
    assert GatewaySettings().redis_url == "redis://elsewhere:6379/2"


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDFLEET_CONFIG", "/nonexistent/embedfleet.toml")
    with pytest.raises(FileNotFoundError, match="does not name a file"):
        GatewaySettings()
