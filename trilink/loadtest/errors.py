"""The load test's typed errors (reason codes end up on the command line and in reports)."""

from __future__ import annotations

from trilink.errors import ConfigError, TrilinkError


class LoadtestConfigError(ConfigError):
    """A load-test option is invalid: ``bad_slo``, ``bad_mix``, ``bad_option``, ``unknown_sensor``."""


class LoadtestError(TrilinkError):
    """A load test could not measure what was asked.

    Reasons: ``harness_saturated`` (the harness could not emit the target rate, so the figures
    describe the harness, not the pipeline), ``allies_not_ready``, ``ally_failed``,
    ``sender_failed``, ``baseline_failed``.
    """
