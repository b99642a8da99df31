"""Identities and authorisation enforced by the broker (issue #11 item 2).

The integration tests start their own secured single-node cluster (TLS listener, SCRAM-SHA-512
principals, StandardAuthorizer with ACLs) through trilink's own cluster code, and try each act
both ways: the allowed one must succeed and the forbidden one must be refused *by the broker*
(kafka-python reports the broker's error code), mapped to trilink's typed AccessDeniedError.
The rest of the suite keeps using the session's plaintext broker.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import socket
import ssl
import stat
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError

from tests.conftest import local_settings
from trilink.errors import ConfigError
from trilink.platform import security
from trilink.platform.clients import admin_config, consumer_config, producer_config
from trilink.platform.cluster import LocalCluster
from trilink.platform.connection import apply_declared_topics
from trilink.platform.security import (
    AccessDeniedError,
    ClientSecurity,
    Credentials,
    access_denied,
    acl_plan,
    principal_for_client,
)
from trilink.platform.state import ClusterState
from trilink.platform.topics import load_topic_file
from trilink.settings import Settings, get_settings

ROLES = {t.role: t.name for t in load_topic_file(get_settings().topics_file).topics}


# -- unit: the plan and the seam ------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize(
    ("client_id", "principal"),
    [
        ("trilink-ally-jp-run-abc", "ally-jp"),
        ("trilink-ally-kr", "ally-kr"),
        ("trilink-ally-us-host_1", "ally-us"),
        ("trilink-hub-1", "hub"),
        ("trilink-sensors-jp", "sensors-jp"),
        ("trilink-sensors-kr-run-7", "sensors-kr"),
        ("trilink-sensors-1a2b3c", "sensors-us"),  # today's one publisher for every nation
        ("trilink-smoke-producer", "admin"),
        ("trilink-loadtest-observer", "admin"),
        ("trilink-allyx", "admin"),
    ],
)
def test_client_ids_name_their_principal(client_id: str, principal: str) -> None:
    assert principal_for_client(client_id) == principal


def _allowed(plan: list[security.AclRule], principal: str, operation: str) -> set[str]:
    return {r.name for r in plan if r.principal == principal and r.operation == operation}


@pytest.mark.unit
def test_direct_plan_sensors_write_shared_topics_allies_read_them() -> None:
    plan = acl_plan(ROLES, "direct")
    shared = {ROLES["warnings"], ROLES["sensor_status"]}
    assert _allowed(plan, "sensors-jp", "WRITE") == shared
    assert _allowed(plan, "ally-jp", "READ") >= shared
    assert _allowed(plan, "ally-jp", "WRITE") == {ROLES["ally.JP"], ROLES["dead_letter"]} | (
        {ROLES["acks"]} if "acks" in ROLES else set()
    )
    assert not _allowed(plan, "hub", "WRITE") - {
        ROLES["dead_letter"],
        *(ROLES[f"feed.{n}"] for n in ("US", "JP", "KR")),
    }


@pytest.mark.unit
def test_hub_plan_each_principal_gets_only_its_topics() -> None:
    plan = acl_plan(ROLES, "hub")
    assert _allowed(plan, "sensors-jp", "WRITE") == {ROLES["ingest.JP"]}
    assert _allowed(plan, "hub", "READ") >= {ROLES[f"ingest.{n}"] for n in ("US", "JP", "KR")}
    assert _allowed(plan, "hub", "WRITE") >= {ROLES[f"feed.{n}"] for n in ("US", "JP", "KR")}
    reads = _allowed(plan, "ally-jp", "READ")
    assert ROLES["feed.JP"] in reads
    assert not reads & {ROLES["feed.KR"], ROLES["feed.US"], ROLES["ingest.JP"], ROLES["warnings"]}
    readers_of_ingest = {
        r.principal for r in plan if r.operation == "READ" and r.name.startswith("trilink.ingest.")
    }
    assert readers_of_ingest == {"hub"}
    groups = {(r.principal, r.name, r.pattern) for r in plan if r.resource == "group"}
    assert ("ally-jp", "trilink-ally-jp", "prefixed") in groups
    assert {g[0] for g in groups} == {"hub", "ally-us", "ally-jp", "ally-kr"}


@pytest.mark.unit
@pytest.mark.parametrize("topology", ["direct", "hub"])
def test_no_principal_may_manage_topics(topology: str) -> None:
    plan = acl_plan(ROLES, topology)  # type: ignore[arg-type]
    assert {r.operation for r in plan} <= {"READ", "WRITE", "DESCRIBE", "IDEMPOTENT_WRITE"}
    assert "admin" not in {r.principal for r in plan}  # a super user: needs no ACL


@pytest.mark.unit
def test_scram_argument_carries_the_salted_password_not_the_password() -> None:
    arg = security.scram_argument("ally-jp", "s3cret-pw", iterations=4096)
    assert "s3cret-pw" not in arg
    assert arg.startswith("SCRAM-SHA-512=[name=ally-jp,iterations=4096,")
    salt = base64.b64decode(arg.split('salt="')[1].split('"')[0])
    salted = base64.b64decode(arg.split('saltedpassword="')[1].split('"')[0])
    assert salted == hashlib.pbkdf2_hmac("sha512", b"s3cret-pw", salt, 4096)


@pytest.mark.unit
def test_plaintext_security_adds_nothing_and_secure_checks_the_hostname() -> None:
    assert security.PLAINTEXT.kafka_options() == {}
    options = ClientSecurity("SASL_SSL", "ally-jp", "pw", Path("/x/ca.pem")).kafka_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["ssl_check_hostname"] is True
    assert "pw" not in repr(ClientSecurity("SASL_SSL", "ally-jp", "pw", Path("/x/ca.pem")))


@pytest.mark.unit
def test_credentials_file_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        security.load_credentials(tmp_path / "nope.json")
    assert missing.value.reason == "credentials_missing"
    bad = tmp_path / "bad.json"
    bad.write_text('{"principals": {}}')
    with pytest.raises(ConfigError) as invalid:
        security.load_credentials(bad)
    assert invalid.value.reason == "credentials_invalid"
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"ca_file": "ca.pem", "principals": {"ally-jp": "pw"}}))
    creds = security.load_credentials(good)
    assert creds.ca_file == tmp_path / "ca.pem"
    with pytest.raises(ConfigError) as unknown:
        creds.for_principal("ally-kr")
    assert unknown.value.reason == "principal_unknown"


# -- integration: a real secured broker -----------------------------------------------------------
class Secured:
    def __init__(self, settings: Settings, state: ClusterState, creds: Credentials) -> None:
        self.settings = settings
        self.state = state
        self.creds = creds
        self.bootstrap = state.bootstrap

    def as_(self, principal: str) -> ClientSecurity:
        return self.creds.for_principal(principal)

    def admin(self, principal: str = "admin") -> Any:
        return KafkaAdminClient(
            **admin_config(self.bootstrap, f"test-{principal}", security=self.as_(principal))
        )

    def use_plan(self, topology: str) -> None:
        """Make the broker's ACLs the plan of ``topology`` and wait until the broker serves them."""
        plan = acl_plan(ROLES, topology)  # type: ignore[arg-type]
        admin = self.admin()
        try:
            security.apply_acls(admin, plan)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                created, deleted = security.apply_acls(admin, plan)
                if not created and not deleted:
                    break
                time.sleep(0.2)
        finally:
            admin.close()
        time.sleep(0.5)  # the broker's authorizer follows the metadata log a moment later


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    settings = local_settings(tmp_path_factory.mktemp("secure-kafka"))
    cluster = LocalCluster(settings)
    state, _ = cluster.up(brokers=1, secure=True)
    try:
        creds = security.load_credentials(settings.state_dir / "security" / "credentials.json")
        apply_declared_topics(state.bootstrap, 1, settings, client=creds.for_principal("admin"))
        yield Secured(settings, state, creds)
    finally:
        cluster.down(purge=True)


def _refusal(act: Callable[[], Any], principal: str) -> AccessDeniedError:
    """Run ``act``; it must be refused by the broker. Returns the typed error."""
    caught: BaseException | None = None
    try:
        act()
    except Exception as exc:
        caught = exc
    if caught is None:
        raise AssertionError(f"{principal}: the broker allowed what it must refuse")
    typed = access_denied(caught, principal, "test act")
    if typed is None:
        raise AssertionError(f"expected the broker's refusal, got {caught!r}")
    return typed


def produce(s: Secured, principal: str, topic: str) -> int:
    return produce_at(s, principal, topic)[1]


def produce_at(s: Secured, principal: str, topic: str) -> tuple[int, int]:
    """(partition, offset) of one record ``principal`` wrote to ``topic``."""
    producer: Any = KafkaProducer(
        **producer_config(s.bootstrap, f"test-{principal}", security=s.as_(principal), max_block_ms=10_000)
    )
    try:
        sent = producer.send(topic, b"v", key=b"k").get(timeout=15)
        return int(sent.partition), int(sent.offset)
    finally:
        producer.close(timeout=5)


def end_offsets(s: Secured, principal: str, topic: str) -> dict[Any, int]:
    consumer: Any = KafkaConsumer(
        **consumer_config(s.bootstrap, None, f"test-{principal}", security=s.as_(principal))
    )
    try:
        ends: dict[Any, int] = consumer.end_offsets([TopicPartition(topic, 0)])
        return ends
    finally:
        consumer.close()


def fetch_one(s: Secured, principal: str, topic: str, partition: int, offset: int) -> bytes:
    consumer: Any = KafkaConsumer(
        **consumer_config(s.bootstrap, None, f"test-{principal}", security=s.as_(principal))
    )
    tp = TopicPartition(topic, partition)
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for records in consumer.poll(500).values():
                value: bytes = records[0].value
                return value
        raise AssertionError(f"{principal} read nothing from {topic}")
    finally:
        consumer.close()


def join_group(s: Secured, principal: str, topic: str, group: str) -> set[Any]:
    consumer: Any = KafkaConsumer(
        **consumer_config(s.bootstrap, group, f"test-{principal}", security=s.as_(principal))
    )
    try:
        # The topic's partitions first: a group joined while this principal's metadata lacks them
        # (the authorizer follows fresh ACLs a moment late) is assigned nothing, and kafka-python
        # did not ask again within a minute on a loaded 2-core machine.
        deadline = time.monotonic() + 60  # a join can take long on a loaded 2-core machine
        while time.monotonic() < deadline:
            try:
                if consumer.partitions_for_topic(topic):
                    break
            except KafkaError:
                pass
            time.sleep(0.2)
        consumer.subscribe([topic])
        while time.monotonic() < deadline and not consumer.assignment():
            consumer.poll(200)
        assignment: set[Any] = consumer.assignment()
        return assignment
    finally:
        consumer.close()


@pytest.mark.integration
def test_state_files_are_owner_only_and_no_plaintext_listener(secured: Secured) -> None:
    sec_dir = secured.settings.state_dir / "security"
    assert stat.S_IMODE(sec_dir.stat().st_mode) == 0o700
    for path in sec_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    props = secured.state.nodes[0].properties_file
    assert stat.S_IMODE(props.stat().st_mode) == 0o600
    text = props.read_text()
    listeners = next(line for line in text.splitlines() if line.startswith("listeners="))
    assert "PLAINTEXT" not in listeners.replace("SASL_SSL", "")
    assert "allow.everyone.if.no.acl.found=false" in text
    assert "super.users=User:broker;User:admin" in text
    creds = json.loads((sec_dir / "credentials.json").read_text())
    assert set(creds["principals"]) == {
        "admin",
        "hub",
        *(f"{k}-{n}" for k in ("sensors", "ally") for n in ("us", "jp", "kr")),
    }


@pytest.mark.integration
def test_the_client_port_speaks_tls_with_the_clusters_certificate(secured: Secured) -> None:
    node = secured.state.nodes[0]
    context = ssl.create_default_context(cafile=str(secured.creds.ca_file))
    with (
        socket.create_connection((secured.state.host, node.client_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert cert.subject.rfc4514_string() == "CN=broker-1"


@pytest.mark.integration
def test_a_plaintext_kafka_request_gets_no_kafka_answer(secured: Secured) -> None:
    from kafka.protocol.metadata.api_versions import ApiVersionsRequest
    from kafka.protocol.parser import KafkaProtocol

    protocol = KafkaProtocol(client_id="test-plaintext")
    request = ApiVersionsRequest()
    request.API_VERSION = 0
    protocol.send_request(request)
    node = secured.state.nodes[0]
    with socket.create_connection((secured.state.host, node.client_port), timeout=10) as sock:
        sock.sendall(protocol.send_bytes())
        received = b""
        try:
            while len(received) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    # A TLS server answers bytes that are not a ClientHello with an alert (0x15) or closes.
    assert received == b"" or received[0] == 0x15


@pytest.mark.integration
def test_login_needs_the_right_password_and_a_trusted_certificate(secured: Secured, tmp_path: Path) -> None:
    security.login_check(secured.bootstrap, secured.as_("ally-jp"))  # the right one logs in
    wrong = ClientSecurity("SASL_SSL", "ally-jp", "not-the-password", secured.creds.ca_file)
    with pytest.raises(AccessDeniedError) as refused:
        security.login_check(secured.bootstrap, wrong)
    assert refused.value.reason == "authentication_failed"
    nobody = ClientSecurity("SASL_SSL", "mallory", "x", secured.creds.ca_file)
    with pytest.raises(AccessDeniedError) as unknown:
        security.login_check(secured.bootstrap, nobody)
    assert unknown.value.reason == "authentication_failed"
    security.create_ca(tmp_path, "another-cluster")  # a CA the broker's certificate is not from
    stranger = ClientSecurity("SASL_SSL", "ally-jp", secured.creds.passwords["ally-jp"], tmp_path / "ca.pem")
    with pytest.raises(AccessDeniedError) as untrusted:
        security.login_check(secured.bootstrap, stranger)
    assert untrusted.value.reason == "tls_failed"


@pytest.mark.integration
def test_describe_brokers_with_a_wrong_password_is_a_typed_refusal(secured: Secured) -> None:
    from trilink.platform.cluster import describe_brokers

    assert len(describe_brokers(secured.bootstrap, security=secured.as_("ally-kr"))) == 1
    wrong = ClientSecurity("SASL_SSL", "ally-kr", "wrong", secured.creds.ca_file)
    with pytest.raises(AccessDeniedError) as refused:
        describe_brokers(secured.bootstrap, security=wrong)
    assert refused.value.reason == "authentication_failed"


@pytest.mark.integration
def test_only_admin_creates_reconfigures_and_deletes_topics(secured: Secured) -> None:
    for principal in ("ally-jp", "hub", "sensors-us"):
        admin = secured.admin(principal)
        try:
            refused = _refusal(partial(admin.create_topics, [NewTopic("trilink.evil.v1", 1, 1)]), principal)
            assert refused.reason in {"topic_authorization_failed", "cluster_authorization_failed"}
            change = ConfigResource(
                ConfigResourceType.TOPIC, ROLES["ally.JP"], configs={"retention.ms": "1000"}
            )
            altered = admin.alter_configs([change], raise_on_unknown=False)["topic"][ROLES["ally.JP"]]
            assert "TopicAuthorizationFailedError" in altered, f"{principal} reconfigured a topic: {altered}"
            refused = _refusal(partial(_delete, admin, ROLES["ally.JP"]), principal)
            assert refused.reason == "topic_authorization_failed"
        finally:
            admin.close()
    admin = secured.admin("admin")
    try:
        admin.create_topics([NewTopic("trilink.admin-made.v1", 1, 1)])
        assert "trilink.admin-made.v1" in admin.list_topics()
        change = ConfigResource(
            ConfigResourceType.TOPIC, "trilink.admin-made.v1", configs={"retention.ms": "60000"}
        )
        assert admin.alter_configs([change], raise_on_unknown=False)["topic"]["trilink.admin-made.v1"] == "OK"
        _delete(admin, "trilink.admin-made.v1")
    finally:
        admin.close()


def _delete(admin: Any, topic: str) -> None:
    admin.delete_topics([topic])  # raises the broker's error


@pytest.mark.integration
def test_direct_topology_acls_both_ways(secured: Secured) -> None:
    secured.use_plan("direct")
    warnings, ally_jp, ally_kr = ROLES["warnings"], ROLES["ally.JP"], ROLES["ally.KR"]
    # A nation's sensors write the shared warning topic, not an ally's topic.
    assert produce(secured, "sensors-jp", warnings) >= 0
    assert (
        _refusal(lambda: produce(secured, "sensors-jp", ally_jp), "sensors-jp").reason
        == "topic_authorization_failed"
    )
    # An ally reads the shared topic in its own consumer group, never in another ally's.
    assert join_group(secured, "ally-jp", warnings, "trilink-ally-jp-test")
    refused = _refusal(lambda: join_group(secured, "ally-jp", warnings, "trilink-ally-kr-test"), "ally-jp")
    assert refused.reason == "group_authorization_failed"
    # An ally writes its own downstream topic and the dead-letter topic, not another ally's.
    assert produce(secured, "ally-jp", ally_jp) >= 0
    assert produce(secured, "ally-jp", ROLES["dead_letter"]) >= 0
    assert (
        _refusal(lambda: produce(secured, "ally-jp", ally_kr), "ally-jp").reason
        == "topic_authorization_failed"
    )
    # ... and cannot read another ally's downstream topic.
    assert end_offsets(secured, "ally-jp", ally_jp)
    assert (
        _refusal(lambda: end_offsets(secured, "ally-jp", ally_kr), "ally-jp").reason
        == "topic_authorization_failed"
    )


@pytest.mark.integration
def test_hub_topology_acls_both_ways(secured: Secured) -> None:
    secured.use_plan("hub")
    try:
        ingest_us, ingest_jp = ROLES["ingest.US"], ROLES["ingest.JP"]
        feed_jp, feed_kr = ROLES["feed.JP"], ROLES["feed.KR"]
        # A nation's sensors write only their own ingest topic.
        ingest_at = produce_at(secured, "sensors-us", ingest_us)
        assert produce(secured, "sensors-jp", ingest_jp) >= 0
        for topic in (ingest_us, ROLES["warnings"], feed_jp):
            refused = _refusal(partial(produce, secured, "sensors-jp", topic), "sensors-jp")
            assert refused.reason == "topic_authorization_failed"
        # Only the hub reads the ingest topics.
        assert fetch_one(secured, "hub", ingest_us, *ingest_at) == b"v"
        for principal in ("ally-jp", "ally-us"):  # not even its metadata (no DESCRIBE)
            refused = _refusal(partial(end_offsets, secured, principal, ingest_us), principal)
            assert refused.reason == "topic_authorization_failed"
        # The US sensors may describe the topic they write, but the broker refuses their fetch.
        refused = _refusal(partial(fetch_one, secured, "sensors-us", ingest_us, *ingest_at), "sensors-us")
        assert refused.reason == "topic_authorization_failed"
        # Only the hub writes the feeds.
        feed_at = produce_at(secured, "hub", feed_kr)
        assert produce(secured, "hub", feed_jp) >= 0
        for principal in ("ally-jp", "sensors-kr"):
            refused = _refusal(partial(produce, secured, principal, feed_kr), principal)
            assert refused.reason == "topic_authorization_failed"
        # An ally reads its own feed (in its own group), not another ally's.
        assert join_group(secured, "ally-jp", feed_jp, "trilink-ally-jp-hub-test")
        assert fetch_one(secured, "ally-kr", feed_kr, *feed_at) == b"v"
        refused = _refusal(lambda: end_offsets(secured, "ally-jp", feed_kr), "ally-jp")
        assert refused.reason == "topic_authorization_failed"
    finally:
        secured.use_plan("direct")


@pytest.mark.integration
def test_clients_resolve_credentials_from_a_credentials_file(
    secured: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seam the commands use: no explicit security, the principal from the client id."""
    secured.use_plan("direct")
    monkeypatch.setenv(
        "TRILINK_CREDENTIALS_FILE", str(secured.settings.state_dir / "security" / "credentials.json")
    )
    get_settings.cache_clear()
    try:
        ally = security.client_security(secured.bootstrap, "trilink-ally-jp-x")
        assert ally.principal == "ally-jp"
        producer: Any = KafkaProducer(
            **producer_config(secured.bootstrap, "trilink-ally-jp-x", max_block_ms=10_000)
        )
        try:
            assert producer.send(ROLES["ally.JP"], b"v").get(timeout=15).offset >= 0
            typed = _refusal(lambda: producer.send(ROLES["ally.KR"], b"v").get(timeout=15), "ally-jp")
            assert typed is not None and typed.reason == "topic_authorization_failed"
        finally:
            producer.close(timeout=5)
    finally:
        monkeypatch.delenv("TRILINK_CREDENTIALS_FILE")
        get_settings.cache_clear()


@pytest.mark.integration
def test_the_local_state_dir_credentials_apply_only_to_that_cluster(secured: Secured) -> None:
    mine = security.client_security(secured.bootstrap, "trilink-ally-kr-1", settings=secured.settings)
    assert mine.principal == "ally-kr" and mine.secure
    other = security.client_security("127.0.0.1:1", "trilink-ally-kr-1", settings=secured.settings)
    assert other == security.PLAINTEXT


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_an_existing_three_broker_secured_cluster_via_bootstrap_and_credentials_file(tmp_path: Path) -> None:
    """TRILINK_BOOTSTRAP + TRILINK_CREDENTIALS_FILE: trilink starts nothing, logs in as admin,
    applies the topics with replication factor 3 and the ACLs, and an ally writes its topic."""
    from trilink.platform.connection import ensure_cluster

    owner = local_settings(tmp_path / "their-cluster", brokers=3)
    cluster = LocalCluster(owner)
    state, _ = cluster.up(brokers=3, secure=True)
    try:
        credentials = owner.state_dir / "security" / "credentials.json"
        user = Settings(
            bootstrap=state.bootstrap, credentials_file=credentials, state_dir=tmp_path / "user-state"
        )
        bootstrap, report, started = ensure_cluster(user)
        assert started is None and bootstrap == state.bootstrap
        assert ROLES["warnings"] in report.created
        creds = security.load_credentials(credentials)
        admin: Any = KafkaAdminClient(
            **admin_config(bootstrap, "test-admin", security=creds.for_principal("admin"))
        )
        try:
            described = admin.describe_topics([ROLES["ally.JP"]])[0]
            assert {len(p["replica_nodes"]) for p in described["partitions"]} == {3}
        finally:
            admin.close()
        ally = creds.for_principal("ally-jp")
        producer: Any = KafkaProducer(
            **producer_config(bootstrap, "test-ally-jp", security=ally, max_block_ms=20_000)
        )
        try:
            # No retry: apply_declared_topics waits until every broker serves the new ACLs.
            assert producer.send(ROLES["ally.JP"], b"v").get(timeout=30).offset >= 0
            refused = _refusal(lambda: producer.send(ROLES["ally.KR"], b"v").get(timeout=30), "ally-jp")
            assert refused.reason == "topic_authorization_failed"
        finally:
            producer.close(timeout=5)
    finally:
        cluster.down(purge=True)
