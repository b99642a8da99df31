"""Typed errors of record and replay, each with a bounded ``reason`` code.

Reasons: ``not_a_recording`` (the file is not an Avro container, or not one of ours),
``missing_recording``, ``truncated_recording`` (the file ends inside a block or its header),
``corrupt_recording`` (a block's sync marker, compression or records are damaged),
``unknown_fingerprint`` (``--rebase`` met a value written with a schema no release has),
``undecodable_value`` (``--rebase`` met a value it cannot decode for another reason),
``bad_option`` (a filter, topic map or limit on the command line is invalid).
"""

from __future__ import annotations

from trilink.errors import TrilinkError


class RecordingError(TrilinkError):
    """A recording file cannot be read (fully, or at all)."""


class ReplayError(TrilinkError):
    """A replay cannot be done as asked (bad option, or a value ``--rebase`` cannot decode)."""
