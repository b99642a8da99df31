"""Where the shipped data files are: package resources, found through :mod:`importlib.resources`.

Every file trilink reads at run time ships inside one of its packages (the Avro releases in
``schemas``, the sensor catalogue, missile classes, sharing policy and scenarios in
``producers``, the topic list, Kafka's Maven project and Prometheus' config in ``deploy``,
the recordings in ``trilink.replay``), so an installed wheel finds them wherever it runs, and
an editable install finds the same files in the working tree.

A wheel is installed unpacked, so every resource is a real file: callers get a
:class:`~pathlib.Path` they can read, list, or hand to another program (``mvn -f``, Java's
log4j, Prometheus). A package imported from a zip archive has no such path and is refused
with a typed error rather than copied to a temporary file behind the caller's back.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from trilink.errors import ConfigError

__all__ = ["package_path"]


def package_path(package: str, *parts: str) -> Path:
    """The path of a file or folder shipped inside ``package`` (``package_path("deploy", "topics.toml")``).

    The path is not checked for existence: the loader that reads it reports a missing file
    with its own typed error.
    """
    root = files(package)
    if not isinstance(root, Path):
        raise ConfigError(
            "resource_not_on_disk",
            f"package {package!r} is not installed as files on disk ({root!r}); "
            "install trilink with pip (a wheel is installed unpacked)",
        )
    return root.joinpath(*parts)
