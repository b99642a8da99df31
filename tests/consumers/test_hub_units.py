"""Unit tests of the hub topology's naming: topics per topology, the sensors' client ids."""

from __future__ import annotations

import pytest

from producers.publisher import _nation_client_id
from trilink.platform.topics import ally_input_roles, feed_role, ingest_role, sensor_topic_role, topic_name

pytestmark = pytest.mark.unit


def test_each_nation_writes_its_ingest_topic_and_each_ally_reads_its_feed_in_the_hub_topology() -> None:
    for nation in ("US", "JP", "KR"):
        assert (
            sensor_topic_role(nation, False, "hub")
            == sensor_topic_role(nation, True, "hub")
            == ingest_role(nation)
        )
        assert ally_input_roles(nation, "hub") == (feed_role(nation),)
        assert topic_name(ingest_role(nation)) == f"trilink.ingest.{nation.lower()}.v1"
        assert topic_name(feed_role(nation)) == f"trilink.feed.{nation.lower()}.v1"
    assert sensor_topic_role("JP", False, "direct") == "warnings"
    assert sensor_topic_role("JP", True, "direct") == "sensor_status"
    assert ally_input_roles("JP", "direct") == ("warnings", "sensor_status")


def test_a_nations_sensor_producer_is_named_for_its_principal() -> None:
    assert _nation_client_id("trilink-sensors-ab12cd34", "JP") == "trilink-sensors-jp-ab12cd34"
    assert _nation_client_id("trilink-sensors", "KR") == "trilink-sensors-kr"
    assert _nation_client_id("bench-hotpath-sensors", "US") == "bench-hotpath-sensors-us"


def test_a_recording_of_the_shared_topics_replays_into_each_nations_ingest_topic() -> None:
    from trilink.replay.format import read_recording, resolve_recordings
    from trilink.replay.replayer import plan_replay

    recordings = [read_recording(p) for p in resolve_recordings(["irbm_over_japan"])]
    hub = plan_replay(recordings, topology="hub").sends
    direct = plan_replay(recordings, topology="direct").sends
    assert hub and len(hub) == len(direct)
    nations = {send.message.sensor_nation for send in hub}
    assert nations >= {"US", "JP"}, nations
    for via_hub, shared in zip(hub, direct, strict=True):
        nation = via_hub.message.sensor_nation
        assert via_hub.topic == topic_name(ingest_role(str(nation)))
        assert shared.topic == via_hub.message.topic  # recorded on the shared topics: kept
    mapped = plan_replay(recordings, topic_map={hub[0].message.topic: "elsewhere"}, topology="hub").sends
    assert {s.topic for s in mapped if s.message.topic == hub[0].message.topic} == {"elsewhere"}
