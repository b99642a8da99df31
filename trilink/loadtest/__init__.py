"""``trilink loadtest``: open-loop load through the three ally services, measured honestly.

Where the pieces live:

- :mod:`~trilink.loadtest.workload`  the schedule of intended send times and the events
- :mod:`~trilink.loadtest.sender`    producer processes that keep to the schedule
- :mod:`consumers.fleet`    the three ally services, one subprocess each (shared with `trilink run`)
- :mod:`~trilink.loadtest.accounting` loss, duplicates, order and latency per ally, hop, kind
- :mod:`~trilink.loadtest.slo`       latency objectives (``p99=50ms``)
- :mod:`~trilink.loadtest.baseline`  Kafka's own ``EndToEndLatency`` tool on the same broker
- :mod:`~trilink.loadtest.runner`    one run, and the capacity search
- :mod:`~trilink.loadtest.report`    the JSON report and the terminal table; ``plot`` the PNG

Latency is counted from each event's *intended* send time (coordinated-omission safe): the
intended time travels in :data:`schemas.headers.SENT_NS_HEADER`, so the ally services' own
hop figures are from-intended too, and the actual send time rides in a second header.
"""
