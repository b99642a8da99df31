"""The consuming side: one ally service per nation (``trilink ally US|JP|KR``).

Each service reads the shared warning topics in its own consumer group, keeps only what the
sharing policy lets its nation see, and fans the accepted events out to three downstream
channels (the ally's Kafka topic, a live Server-Sent-Events stream, an append-only audit
file), measuring every hop. :mod:`consumers.service` holds :class:`AllyService`; see its
module docstring for the in-process API and the report format.
"""
