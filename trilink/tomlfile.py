"""Reading a TOML file into a document, with the project's typed errors.

The topic list, the sharing policy, the sensor catalogue, the missile classes and the
scenarios are all TOML. Each loader validates its own schema; reading and parsing are the
same for all of them and live here: an unreadable file and text that is not TOML each
become the caller's error class with the caller's reason code and the file named.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from trilink.errors import TrilinkError

__all__ = ["parse_toml", "read_toml"]


def parse_toml(text: str, origin: str, error: type[TrilinkError], *, invalid: str) -> dict[str, Any]:
    """Parse TOML ``text`` read from ``origin``; a syntax error raises ``error(invalid, ...)``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(invalid, f"{origin}: not TOML: {exc}") from None


def read_toml(path: Path, error: type[TrilinkError], *, missing: str, invalid: str) -> dict[str, Any]:
    """Read and parse the TOML file at ``path``.

    A file that cannot be read raises ``error(missing, ...)``, one that is not TOML
    ``error(invalid, ...)``; both messages start with the path.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(missing, f"{path}: {exc.strerror or exc}") from None
    return parse_toml(text, str(path), error, invalid=invalid)
