"""Shared fixtures. Integration tests talk to a real Kafka broker: one per test session,
started by trilink's own cluster code on free loopback ports in a temporary state
directory, or the cluster named by ``TRILINK_BOOTSTRAP`` (then nothing is started)."""
