"""The files of an ally's live page (package data in ``consumers/web/``) and the areas it draws.

The page (``/``) is plain HTML, CSS and JavaScript with no build step and nothing fetched from
elsewhere: coastlines come from ``web/vendor/world_atlas/`` (Natural Earth, public domain), the
alert and EEZ areas from :mod:`schemas.areas` as ``/areas.json``, and the picture itself from the
service's own ``/stream``, so a page shows exactly what its ally was released. Everything is read
as package resources (:func:`trilink.resources.package_path`: an installed wheel works outside
the repository) once, on the
first request; only the files listed in :data:`STATIC_FILES` are served.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from schemas.areas import shipped_area_file
from trilink.errors import TrilinkError
from trilink.resources import package_path

__all__ = ["STATIC_FILES", "Asset", "LivePageError", "live_page_assets"]

#: Files of ``consumers/web/`` served under ``/static/``; ``index.html`` is also ``/``.
STATIC_FILES: tuple[str, ...] = (
    "index.html",
    "app.js",
    "style.css",
    "vendor/world_atlas/land-50m-region.json",
    "vendor/world_atlas/LICENSE",
    "vendor/world_atlas/README.md",
)

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
}
_PLAIN = "text/plain; charset=utf-8"


class LivePageError(TrilinkError):
    """The live page's files could not be read (reason ``live_page_missing``): a broken install.
    The service goes on delivering; only the page answers 503."""


@dataclass(frozen=True, slots=True)
class Asset:
    """One response body of the live page."""

    body: bytes
    content_type: str


def _content_type(name: str) -> str:
    dot = name.rfind(".")
    return _CONTENT_TYPES.get(name[dot:], _PLAIN) if dot > name.rfind("/") else _PLAIN


def _load() -> dict[str, Asset]:
    web = package_path("consumers", "web")
    assets: dict[str, Asset] = {}
    try:
        for name in STATIC_FILES:
            assets[f"/static/{name}"] = Asset(
                web.joinpath(*name.split("/")).read_bytes(), _content_type(name)
            )
        areas = shipped_area_file().model_dump_json(exclude={"comment"}).encode()
    except OSError as exc:
        raise LivePageError("live_page_missing", f"a file of the live page cannot be read: {exc}") from None
    assets["/"] = assets["/static/index.html"]
    assets["/areas.json"] = Asset(areas, "application/json")
    return assets


@cache
def live_page_assets() -> dict[str, Asset]:
    """URL path -> body of every file of the live page (read once; raises :class:`LivePageError`)."""
    return _load()
