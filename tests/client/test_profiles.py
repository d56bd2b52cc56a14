"""Connection profiles (client/profiles.py): what a profile sets, what wins over it, what is refused;
and the CLI reaching the real gateway through one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from embedfleet.client.cli import main
from embedfleet.client.profiles import ProfileError, load_profile
from embedfleet.local import LocalCluster


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_a_profile_sets_connection_options(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.toml", '[prod]\ngateway = "grpcs://h:443"\nca_file = "~/ca.pem"\n')
    values, warnings = load_profile("prod", path)
    assert values == {"gateway": "grpcs://h:443", "ca_file": str(Path.home() / "ca.pem")} and not warnings
    assert load_profile("default", path) == ({}, [])  # no [default]: nothing set
    assert load_profile("default", tmp_path / "absent.toml") == ({}, [])


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        ('[prod]\ngateway = "h:1"\n', "staging", "no profile 'staging'.*profiles there: prod"),
        ('[prod]\ngateway = "h:1"\ntoken = "x"\n', "prod", "unknown options \\['token'\\]"),
        ("[prod]\ngateway = 5\n", "prod", "gateway must be a string"),
        ("[prod\n", "prod", "not valid TOML"),
    ],
)
def test_a_wrong_profile_says_what_to_change(tmp_path: Path, text: str, name: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        load_profile(name, _write(tmp_path / "p.toml", text))


def test_a_readable_key_is_warned_about(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.toml", '[default]\napi_key = "secret"\n', mode=0o644)
    values, warnings = load_profile("default", path)
    assert values == {"api_key": "secret"} and "chmod 600" in warnings[0] and "secret" not in warnings[0]


def test_the_cli_reaches_the_gateway_a_profile_names(
    celery_system: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "p.toml", f'[local]\ngateway = "{celery_system.gateway_address}"\n')
    monkeypatch.setenv("EMBEDFLEET_PROFILES", str(path))
    monkeypatch.delenv("EMBEDFLEET_GATEWAY", raising=False)
    runner = CliRunner()
    result = runner.invoke(main, ["--profile", "local", "--json", "models"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert any(m["name"] == "all-MiniLM-L6-v2" for m in json.loads(result.output))
    # An explicit option wins over the profile: nothing listens on this port.
    result = runner.invoke(main, ["--profile", "local", "--gateway", "127.0.0.1:1", "--json", "models"])
    assert result.exit_code == 6, result.output  # UNAVAILABLE
    result = runner.invoke(main, ["--profile", "nope", "models"])
    assert result.exit_code == 2 and "no profile 'nope'" in result.output
