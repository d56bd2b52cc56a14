"""Named connection profiles for the CLI, in one TOML file: where a gateway is and how to reach it.

    # ~/.config/embedfleet/profiles.toml  (or $EMBEDFLEET_PROFILES)
    [default]
    gateway = "127.0.0.1:50051"

    [prod]
    gateway = "grpcs://embedfleet.example.com:443"
    api_key = "ef_..."
    ca_file = "~/certs/prod-ca.pem"

``embedfleet --profile prod jobs list`` then needs no other connection option. A value given on the
command line or in an ``EMBEDFLEET_*`` variable wins over the profile, which wins over the built-in
default, so a profile never hides what a user typed. A file that holds an API key should be readable
by its owner only (as ssh insists for its keys): the CLI warns otherwise.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

# The connection options a profile may set (the CLI's option names, with underscores).
PROFILE_KEYS = ("gateway", "api_key", "ca_file", "cert_file", "key_file")
PATH_KEYS = frozenset({"ca_file", "cert_file", "key_file"})
DEFAULT_PROFILE = "default"


class ProfileError(ValueError):
    """The profile file or the profile asked for is wrong; the message says what to change."""


def profiles_path() -> Path:
    """``$EMBEDFLEET_PROFILES``, else ``$XDG_CONFIG_HOME/embedfleet/profiles.toml`` (``~/.config``)."""
    explicit = os.environ.get("EMBEDFLEET_PROFILES")
    if explicit:
        return Path(explicit).expanduser()
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config_home / "embedfleet" / "profiles.toml"


def load_profile(name: str, path: Path | None = None) -> tuple[dict[str, str], list[str]]:
    """The options profile ``name`` sets, and warnings for the user. A missing file or a missing
    ``default`` profile is no profile at all; a named profile that is not there is an error."""
    path = path or profiles_path()
    if not path.exists():
        if name != DEFAULT_PROFILE:
            raise ProfileError(f"profile {name!r} asked for, but there is no profile file at {path}")
        return {}, []
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path} is not valid TOML: {exc}") from None
    section = document.get(name)
    if section is None:
        if name == DEFAULT_PROFILE:
            return {}, []
        known = ", ".join(sorted(k for k, v in document.items() if isinstance(v, dict))) or "none"
        raise ProfileError(f"no profile {name!r} in {path} (profiles there: {known})")
    if not isinstance(section, dict):
        raise ProfileError(f"{path}: [{name}] must be a table of options")
    unknown = sorted(set(section) - set(PROFILE_KEYS))
    if unknown:
        raise ProfileError(f"{path}: [{name}] has unknown options {unknown}; allowed: {', '.join(PROFILE_KEYS)}")
    values: dict[str, str] = {}
    for key, value in section.items():
        if not isinstance(value, str):
            raise ProfileError(f"{path}: [{name}] {key} must be a string")
        values[key] = str(Path(value).expanduser()) if key in PATH_KEYS else value
    warnings = []
    if "api_key" in values and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.append(f"{path} holds an API key and others can read it: chmod 600 {path}")
    return values, warnings
