"""The project's own error hierarchy.

Every error raised at a trust boundary is a :class:`TrilinkError` carrying a stable,
snake_case ``reason`` code. The code is what ends up in a metric label and in a
dead-letter record header, so it must come from a small, bounded set per class.
``retriable`` tells the caller whether trying the same thing again can succeed.
"""

from __future__ import annotations


class TrilinkError(Exception):
    """Base of every error trilink raises on purpose."""

    retriable: bool = False

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"[{self.reason}] {self.message}"


class ConfigError(TrilinkError):
    """A configuration file, setting or command-line value is invalid."""


class PlatformError(TrilinkError):
    """The local platform (Java, Maven, the Kafka broker processes) cannot do what was asked."""


class BrokerNotReadyError(PlatformError):
    """A broker process did not become ready in time; ``log_tail`` holds its last log lines."""

    retriable = True

    def __init__(self, reason: str, message: str, log_tail: str = "") -> None:
        super().__init__(reason, message)
        self.log_tail = log_tail


class TopicError(PlatformError):
    """Declared topics could not be applied or reconciled."""


class ContractError(TrilinkError):
    """An event does not fit the event contract (schema, model or wire format)."""


class SerializationError(ContractError):
    """Producing side: a typed event could not be encoded."""


class DeserializationError(ContractError):
    """Consuming side: bytes or headers from the wire could not be decoded into a valid event."""


class SimulationError(TrilinkError):
    """A trajectory, sensor or scenario request is physically or logically impossible."""


class DeliveryError(TrilinkError):
    """An accepted event could not be delivered to a downstream channel."""

    retriable = True
