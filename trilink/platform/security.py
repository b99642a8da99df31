"""Identities and authorisation enforced by the broker: the local cluster's CA and broker
certificates, its SCRAM-SHA-512 principals, the ACL plan derived from the topic file, and the
one seam (:class:`ClientSecurity`) through which every Kafka client learns how to connect.

Layout in the state dir (``.trilink/security/``, mode 0700; every file 0600, owner only)::

    ca.pem, ca.key            the cluster's own certificate authority
    node-<id>.pem             a broker's private key + certificate chain (Kafka PEM keystore)
    credentials.json          {"ca_file", "mechanism", "principals": {name: password}}

``credentials.json`` is also the documented file a user hands trilink (``TRILINK_CREDENTIALS_FILE``)
for a secured cluster trilink did not start; ``ca_file`` is relative to the file.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trilink.errors import ConfigError, PlatformError
from trilink.platform.state import load_cluster_state
from trilink.settings import Settings, get_settings

MECHANISM = "SCRAM-SHA-512"
#: The broker's own principal (inter-broker SASL and, via the certificate's CN, the controller
#: listener): a super user, as Kafka requires for inter-broker and controller requests.
BROKER_PRINCIPAL = "broker"
ADMIN_PRINCIPAL = "admin"
HUB_PRINCIPAL = "hub"
#: Kafka's minimum for SCRAM-SHA-512 is 4096 iterations (ScramMechanism); twice that here.
SCRAM_ITERATIONS = 8192
SECURITY_DIR = "security"
CREDENTIALS_FILE = "credentials.json"
CA_CERT = "ca.pem"
CA_KEY = "ca.key"
_CERT_VALIDITY = dt.timedelta(days=825)

Protocol = Literal["PLAINTEXT", "SASL_SSL"]


class AccessDeniedError(PlatformError):
    """The broker refused a client: authentication failed or an ACL denied the act.

    Reasons: ``authentication_failed``, ``tls_failed``, ``topic_authorization_failed``,
    ``group_authorization_failed``, ``cluster_authorization_failed``,
    ``transactional_id_authorization_failed``. Not retriable: the same principal will be
    refused again until an operator changes the ACLs or the credentials."""


def sensors_principal(nation: str) -> str:
    return f"sensors-{nation.lower()}"


def ally_principal(nation: str) -> str:
    return f"ally-{nation.lower()}"


def principals(nations: Iterable[str]) -> list[str]:
    """Every client principal of a cluster serving ``nations`` (the broker's own excluded)."""
    codes = sorted({n.upper() for n in nations})
    return [
        ADMIN_PRINCIPAL,
        HUB_PRINCIPAL,
        *(sensors_principal(n) for n in codes),
        *(ally_principal(n) for n in codes),
    ]


# -- the client seam ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClientSecurity:
    """How one client connects: plaintext, or SASL_SSL as ``principal`` with the cluster's CA
    verifying the broker's certificate (hostname checked against its SAN)."""

    protocol: Protocol = "PLAINTEXT"
    principal: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None

    @property
    def secure(self) -> bool:
        return self.protocol == "SASL_SSL"

    def kafka_options(self) -> dict[str, Any]:
        """kafka-python client settings (empty for plaintext: today's behaviour, unchanged)."""
        if not self.secure:
            return {}
        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": self.principal,
            "sasl_plain_password": self.password,
            "ssl_cafile": str(self.ca_file),
            "ssl_check_hostname": True,
        }


PLAINTEXT = ClientSecurity()


@dataclass(frozen=True)
class Credentials:
    """A secured cluster's client credentials, as stored in ``credentials.json``."""

    ca_file: Path
    passwords: dict[str, str] = field(repr=False)

    def for_principal(self, principal: str) -> ClientSecurity:
        password = self.passwords.get(principal)
        if password is None:
            raise ConfigError(
                "principal_unknown",
                f"no credentials for principal {principal!r} (known: {sorted(self.passwords)})",
            )
        return ClientSecurity("SASL_SSL", principal, password, self.ca_file)


def load_credentials(path: Path) -> Credentials:
    """Read a credentials file; a missing, unreadable or malformed one is a typed ConfigError."""
    try:
        raw = json.loads(path.read_text())
        ca = Path(raw["ca_file"])
        passwords = {str(k): str(v) for k, v in raw["principals"].items()}
        mechanism = raw.get("mechanism", MECHANISM)
    except FileNotFoundError as exc:
        raise ConfigError("credentials_missing", f"credentials file {path} does not exist") from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError("credentials_invalid", f"credentials file {path}: {exc!r}") from exc
    if mechanism != MECHANISM:
        raise ConfigError(
            "credentials_invalid", f"{path}: mechanism {mechanism!r}, trilink speaks {MECHANISM}"
        )
    if not passwords:
        raise ConfigError("credentials_invalid", f"{path}: no principals")
    return Credentials(ca if ca.is_absolute() else path.parent / ca, passwords)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file only its owner can read (created 0600, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)


def principal_for_client(client_id: str) -> str:
    """The principal a client connects as, from trilink's client-id naming: ``trilink-ally-<xx>...``
    is that ally's service, ``trilink-hub...`` the hub, ``trilink-sensors-<xx>...`` a nation's
    sensors, ``trilink-sensors...`` (today's one publisher for every nation's sensors) the US
    sensors; anything else (smoke, recorder, replay, load test, probes, tests) is a tool: admin."""
    m = re.match(r"trilink-ally-([a-z]{2})(?![a-z])", client_id)
    if m:
        return ally_principal(m.group(1))
    if client_id.startswith("trilink-hub"):
        return HUB_PRINCIPAL
    m = re.match(r"trilink-sensors-([a-z]{2})(?![a-z0-9])", client_id)
    if m:
        return sensors_principal(m.group(1))
    if client_id.startswith("trilink-sensors"):
        return sensors_principal("US")
    return ADMIN_PRINCIPAL


def _same_servers(a: str, b: str) -> bool:
    return {s.strip() for s in a.split(",")} == {s.strip() for s in b.split(",")}


def client_security(
    bootstrap: str, client_id: str, principal: str | None = None, settings: Settings | None = None
) -> ClientSecurity:
    """How a client named ``client_id`` connects to ``bootstrap``.

    A credentials file in the settings (``TRILINK_CREDENTIALS_FILE``) applies to every client;
    otherwise the local cluster's own credentials apply when ``bootstrap`` is that cluster and it
    runs secured; otherwise plaintext. The principal is ``principal`` when given, the only one in
    the file when it holds one, else :func:`principal_for_client`."""
    settings = settings or get_settings()
    creds: Credentials | None = None
    if settings.credentials_file is not None:
        creds = load_credentials(settings.credentials_file)
    else:
        state = load_cluster_state(settings.state_dir)
        if state is not None and state.security == "SASL_SSL" and _same_servers(state.bootstrap, bootstrap):
            creds = load_credentials(settings.state_dir / SECURITY_DIR / CREDENTIALS_FILE)
    if creds is None:
        return PLAINTEXT
    if principal is None:
        principal = (
            next(iter(creds.passwords)) if len(creds.passwords) == 1 else principal_for_client(client_id)
        )
    return creds.for_principal(principal)


def access_denied(exc: BaseException, principal: str | None, act: str) -> AccessDeniedError | None:
    """The typed error for a broker's refusal (``None`` when ``exc`` is not one)."""
    from kafka import errors as kerr

    reasons: list[tuple[type[BaseException], str]] = [
        (kerr.SaslAuthenticationFailedError, "authentication_failed"),
        (kerr.TopicAuthorizationFailedError, "topic_authorization_failed"),
        (kerr.GroupAuthorizationFailedError, "group_authorization_failed"),
        (kerr.ClusterAuthorizationFailedError, "cluster_authorization_failed"),
        (kerr.TransactionalIdAuthorizationFailedError, "transactional_id_authorization_failed"),
    ]
    seen: BaseException | None = exc
    while seen is not None:  # the refusal may be the cause of a wrapping error
        for kind, reason in reasons:
            if isinstance(seen, kind):
                return AccessDeniedError(
                    reason, f"the broker refused {principal or 'the client'}: {act}: {seen}"
                )
        seen = seen.__cause__
    return None


def login_check(bootstrap: str, client: ClientSecurity, timeout_s: float = 10.0) -> None:
    """Log in once, as ``client``, to the first broker of ``bootstrap``: TLS (the cluster's CA,
    hostname checked) then the SCRAM-SHA-512 exchange. Raises :class:`AccessDeniedError`
    ``authentication_failed`` when the broker refuses the login, ``tls_failed`` when the broker's
    certificate does not verify, :class:`PlatformError` ``bootstrap_unreachable`` when nothing
    answers. kafka-python itself retries a refused login until its bootstrap timeout and then
    reports only a timeout, so commands call this to say why they cannot connect."""
    import socket
    import ssl

    from kafka import errors as kerr
    from kafka.net.sasl import get_sasl_mechanism
    from kafka.protocol.parser import KafkaProtocol
    from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest

    if not client.secure:
        return
    host, _, port = bootstrap.split(",", maxsplit=1)[0].strip().rpartition(":")
    context = ssl.create_default_context(cafile=str(client.ca_file))
    protocol = KafkaProtocol(client_id="trilink-login-check")

    def call(sock: ssl.SSLSocket, request: Any) -> Any:
        protocol.send_request(request)
        sock.sendall(protocol.send_bytes())
        while True:
            data = sock.recv(65536)
            if not data:
                raise AccessDeniedError(
                    "authentication_failed", f"{host}:{port} closed the connection during login"
                )
            answers = protocol.receive_bytes(data)
            if answers:
                return answers[0][1]

    try:
        with (
            socket.create_connection((host, int(port)), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host) as sock,
        ):
            handshake = SaslHandshakeRequest(mechanism=MECHANISM)
            handshake.API_VERSION = 1
            answer = call(sock, handshake)
            if answer.error_code != 0 or MECHANISM not in answer.mechanisms:
                raise AccessDeniedError(
                    "authentication_failed", f"{host}:{port} does not offer {MECHANISM} ({answer.mechanisms})"
                )
            mechanism = get_sasl_mechanism(MECHANISM)(host=host, **client.kafka_options())
            while not mechanism.is_done():
                request = SaslAuthenticateRequest(auth_bytes=mechanism.auth_bytes())
                request.API_VERSION = 1
                answer = call(sock, request)
                if answer.error_code != 0:
                    raise AccessDeniedError(
                        "authentication_failed",
                        f"the broker refused the login of {client.principal}: {answer.error_message}",
                    )
                mechanism.receive(answer.auth_bytes)
            if not mechanism.is_authenticated():
                raise AccessDeniedError(
                    "authentication_failed", f"the broker's SCRAM proof for {client.principal} did not verify"
                )
    except ssl.SSLCertVerificationError as exc:
        raise AccessDeniedError(
            "tls_failed", f"{host}:{port}: the broker's certificate does not verify: {exc}"
        ) from exc
    except (ssl.SSLError, kerr.KafkaError) as exc:
        raise AccessDeniedError("tls_failed", f"{host}:{port}: TLS/SASL exchange failed: {exc!r}") from exc
    except OSError as exc:
        raise PlatformError("bootstrap_unreachable", f"{host}:{port} does not answer: {exc!r}") from exc


def java_client_properties(client: ClientSecurity, state_dir: Path) -> list[str]:
    """``--command-config <file>`` for Kafka's Java tools connecting as ``client`` (nothing for
    plaintext). The file is owner-only: it holds the principal's password."""
    if not client.secure:
        return []
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{client.principal}" password="{client.password}";'
    )
    text = (
        "security.protocol=SASL_SSL\n"
        f"sasl.mechanism={MECHANISM}\n"
        f"sasl.jaas.config={jaas}\n"
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={client.ca_file}\n"
        "ssl.endpoint.identification.algorithm=https\n"
    )
    path = state_dir / SECURITY_DIR / f"java-client-{client.principal}.properties"
    write_private(path, text.encode())
    return ["--command-config", str(path)]


# -- CA, certificates, SCRAM ----------------------------------------------------------------------
def _new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    # Unencrypted PKCS#8: the form Kafka's PEM keystore reads without ssl.key.password.
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _pem_cert(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str) -> Any:
    """A subject of the CN alone, so a broker's distinguished name is exactly ``CN=broker-<id>``."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_ca(directory: Path, cluster_id: str) -> None:
    """A self-signed CA for one cluster (its key never leaves ``directory``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    name = _name(f"trilink CA {cluster_id}")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(directory / CA_KEY, _pem_key(key))
    write_private(directory / CA_CERT, _pem_cert(cert))


def create_node_keystore(directory: Path, node_id: int, host: str) -> Path:
    """Key and certificate of broker ``node_id``, signed by the cluster's CA: CN ``broker-<id>``
    (mapped to the principal ``broker``), SAN the loopback address it listens on plus localhost,
    usable as server (client listener) and client (controller listener, mutual TLS)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_key: Any = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        sans.insert(0, x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        sans.insert(0, x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{BROKER_PRINCIPAL}-{node_id}"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    path = directory / f"node-{node_id}.pem"
    write_private(path, _pem_key(key) + _pem_cert(cert) + _pem_cert(ca_cert))
    return path


def scram_argument(name: str, password: str, iterations: int = SCRAM_ITERATIONS) -> str:
    """``kafka-storage format --add-scram`` value for one principal, carrying the salted password
    (RFC 5802 Hi(): PBKDF2-HMAC-SHA-512) so the clear password never appears on a command line."""
    salt = secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return (
        f"{MECHANISM}=[name={name},iterations={iterations},"
        f'salt="{b64(salt).decode()}",saltedpassword="{b64(salted).decode()}"]'
    )


@dataclass(frozen=True)
class SecurityMaterial:
    """What a secured local cluster's brokers are started with."""

    directory: Path
    broker_password: str = field(repr=False)
    client_passwords: dict[str, str] = field(repr=False)

    @property
    def ca_file(self) -> Path:
        return self.directory / CA_CERT

    def keystore(self, node_id: int) -> Path:
        return self.directory / f"node-{node_id}.pem"

    def scram_arguments(self) -> list[str]:
        everyone = {BROKER_PRINCIPAL: self.broker_password, **self.client_passwords}
        return [scram_argument(name, pw) for name, pw in everyone.items()]


def create_material(
    state_dir: Path, cluster_id: str, node_ids: list[int], host: str, nations: Iterable[str]
) -> SecurityMaterial:
    """A fresh CA, broker certificates and passwords for a new cluster (old ones are replaced)."""
    directory = state_dir / SECURITY_DIR
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    for old in directory.iterdir():
        old.unlink()
    create_ca(directory, cluster_id)
    for node_id in node_ids:
        create_node_keystore(directory, node_id, host)
    passwords = {name: secrets.token_urlsafe(24) for name in principals(nations)}
    broker_password = secrets.token_urlsafe(24)
    write_private(directory / ".broker-password", broker_password.encode())
    write_private(
        directory / CREDENTIALS_FILE,
        json.dumps({"ca_file": CA_CERT, "mechanism": MECHANISM, "principals": passwords}, indent=2).encode(),
    )
    return SecurityMaterial(directory, broker_password, passwords)


def load_material(state_dir: Path) -> SecurityMaterial:
    """The material of an existing secured cluster (to restart its brokers on their data)."""
    directory = state_dir / SECURITY_DIR
    creds = load_credentials(directory / CREDENTIALS_FILE)
    try:
        broker_password = (directory / ".broker-password").read_text().strip()
    except OSError as exc:
        raise ConfigError("credentials_missing", f"{directory}: broker password missing ({exc})") from exc
    return SecurityMaterial(directory, broker_password, creds.passwords)


def broker_properties(
    material: SecurityMaterial, node_id: int, host: str, client_port: int, controller_port: int
) -> dict[str, str]:
    """The listener, TLS, SASL and authoriser part of a secured broker's ``server.properties``:
    clients and brokers on SASL_SSL (SCRAM-SHA-512), the controller quorum on mutual TLS (KRaft
    cannot authenticate controllers with SCRAM: its credentials live in the metadata log the
    controllers serve); no plaintext listener."""
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{BROKER_PRINCIPAL}" password="{material.broker_password}";'
    )
    return {
        "listeners": f"SASL_SSL://{host}:{client_port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"SASL_SSL://{host}:{client_port}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SSL",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(material.keystore(node_id)),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(material.ca_file),
        "ssl.endpoint.identification.algorithm": "https",
        "listener.name.controller.ssl.client.auth": "required",
        # A broker's certificate CN broker-<id> is the principal User:broker on the controller listener.
        "ssl.principal.mapping.rules": f"RULE:^CN=({BROKER_PRINCIPAL})-[0-9]+$/$1/,DEFAULT",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{BROKER_PRINCIPAL};User:{ADMIN_PRINCIPAL}",
    }


# -- the ACL plan ---------------------------------------------------------------------------------
ResourceKind = Literal["topic", "group", "cluster"]
PatternKind = Literal["literal", "prefixed"]
Operation = Literal["READ", "WRITE", "DESCRIBE", "IDEMPOTENT_WRITE"]


@dataclass(frozen=True, order=True)
class AclRule:
    """Allow ``principal`` to do ``operation`` on a resource (everything not allowed is denied)."""

    principal: str
    resource: ResourceKind
    name: str
    operation: Operation
    pattern: PatternKind = "literal"

    def describe(self) -> str:
        star = "*" if self.pattern == "prefixed" else ""
        return f"User:{self.principal} {self.operation} {self.resource}:{self.name}{star}"


#: Role names in deploy/topics.toml the plan understands: ``ingest.<N>`` a nation's sensors ->
#: hub, ``feed.<N>`` hub -> ally <N>, ``ally.<N>`` ally <N>'s downstream topic, ``acks`` the
#: acknowledgements every ally writes and reads, ``dead_letter``. In the ``direct`` topology
#: (no hub) sensors write the shared ``warnings`` and ``sensor_status`` topics and every ally
#: reads them; in ``hub`` each sensor principal writes only its ingest topic, only the hub reads
#: those, and each ally reads only its feed. A role not declared yet gets no ACL.
SHARED_INGEST_ROLES = ("warnings", "sensor_status")
CLUSTER_NAME = "kafka-cluster"


def group_prefix(principal: str) -> str:
    """The consumer-group id prefix a principal owns: ``trilink-ally-jp`` for ``ally-jp``."""
    return f"trilink-{principal}"


def acl_plan(roles: dict[str, str], topology: Literal["direct", "hub"]) -> list[AclRule]:
    """Every ACL the cluster needs, from the topic file's ``role -> name`` map and the topology.
    The broker's own principal and admin are super users and need none; nobody else may create,
    delete or reconfigure topics (no CREATE/DELETE/ALTER/ALTER_CONFIGS is ever granted)."""
    nations = sorted(role.split(".", 1)[1] for role in roles if role.startswith("ally."))
    rules: list[AclRule] = []

    def topic(principal: str, role: str, *ops: Operation) -> None:
        if role in roles:
            rules.extend(AclRule(principal, "topic", roles[role], op) for op in ("DESCRIBE", *ops))

    hub_era = topology == "hub"
    for n in nations:
        sensors = sensors_principal(n)
        if hub_era:
            topic(sensors, f"ingest.{n}", "WRITE")
        else:
            for role in SHARED_INGEST_ROLES:
                topic(sensors, role, "WRITE")
        rules.append(AclRule(sensors, "cluster", CLUSTER_NAME, "IDEMPOTENT_WRITE"))
    for role in [f"ingest.{n}" for n in nations] if hub_era else list(SHARED_INGEST_ROLES):
        topic(HUB_PRINCIPAL, role, "READ")
    for n in nations:
        topic(HUB_PRINCIPAL, f"feed.{n}", "WRITE")
    topic(HUB_PRINCIPAL, "dead_letter", "WRITE")
    rules.append(AclRule(HUB_PRINCIPAL, "cluster", CLUSTER_NAME, "IDEMPOTENT_WRITE"))
    rules.append(AclRule(HUB_PRINCIPAL, "group", group_prefix(HUB_PRINCIPAL), "READ", "prefixed"))
    for n in nations:
        ally = ally_principal(n)
        if hub_era:
            topic(ally, f"feed.{n}", "READ")
        else:
            for role in SHARED_INGEST_ROLES:
                topic(ally, role, "READ")
        # Its own downstream topic: written, and read back to rebuild the de-duplication window.
        topic(ally, f"ally.{n}", "WRITE", "READ")
        topic(ally, "acks", "WRITE", "READ")
        topic(ally, "dead_letter", "WRITE")
        rules.append(AclRule(ally, "cluster", CLUSTER_NAME, "IDEMPOTENT_WRITE"))
        rules.append(AclRule(ally, "group", group_prefix(ally), "READ", "prefixed"))
    return sorted(set(rules))


def apply_acls(admin: Any, plan: list[AclRule]) -> tuple[list[str], list[str]]:
    """Make the broker's ACLs equal ``plan``: create what is missing, delete what is not in it.
    Returns (created, deleted) as readable lines. ``admin`` is a KafkaAdminClient as a super user."""
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourcePatternFilter,
        ResourceType,
    )

    kinds = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP, "cluster": ResourceType.CLUSTER}
    patterns = {"literal": ACLResourcePatternType.LITERAL, "prefixed": ACLResourcePatternType.PREFIXED}

    def to_acl(rule: AclRule) -> Any:
        return ACL(
            principal=f"User:{rule.principal}",
            host="*",
            operation=ACLOperation[rule.operation],
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(kinds[rule.resource], rule.name, patterns[rule.pattern]),
        )

    def key(acl: Any) -> tuple[Any, ...]:
        rp = acl.resource_pattern
        return (
            acl.principal,
            acl.host,
            int(acl.operation),
            int(acl.permission_type),
            int(rp.resource_type),
            rp.resource_name,
            int(rp.pattern_type),
        )

    everything = ACLFilter(
        principal=None,
        host=None,
        operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
    )
    existing, _ = admin.describe_acls(everything)
    have = {key(a): a for a in existing}
    want = {key(to_acl(r)): (r, to_acl(r)) for r in plan}
    missing = [want[k] for k in want if k not in have]
    stale = [have[k] for k in have if k not in want]
    created: list[str] = []
    deleted: list[str] = []
    if missing:
        result = admin.create_acls([acl for _, acl in missing])
        if result["failed"]:
            raise PlatformError("acl_apply_failed", f"creating ACLs failed: {result['failed']}")
        created = [rule.describe() for rule, _ in missing]
    if stale:
        filters = [
            ACLFilter(
                principal=a.principal,
                host=a.host,
                operation=a.operation,
                permission_type=a.permission_type,
                resource_pattern=ResourcePatternFilter(
                    a.resource_pattern.resource_type,
                    a.resource_pattern.resource_name,
                    a.resource_pattern.pattern_type,
                ),
            )
            for a in stale
        ]
        for _, matched, error in admin.delete_acls(filters):
            if error.__name__ != "NoError":
                raise PlatformError("acl_apply_failed", f"deleting stale ACLs failed: {error.__name__}")
            deleted += [
                f"{a.principal} {a.operation.name} {a.resource_pattern.resource_name}" for a in matched
            ]
    if created or deleted:
        _wait_until_every_broker_serves(admin, everything, set(want), key)
    return created, deleted


def _wait_until_every_broker_serves(
    admin: Any, everything: Any, wanted: set[tuple[Any, ...]], key: Any, timeout_s: float = 30.0
) -> None:
    """Each broker applies ACL changes from the metadata log a moment after the controller has
    committed them; a client starting right after ``trilink up`` could otherwise be refused by a
    broker that has not caught up. Asks every broker itself (kafka-python's ``describe_acls``
    asks whichever broker is least loaded, hence its connection manager addressed per node)."""
    import time

    from kafka.protocol.admin import DescribeAclsRequest

    rp = everything.resource_pattern
    pending = [b["broker_id"] for b in admin.describe_cluster()["brokers"]]
    deadline = time.monotonic() + timeout_s
    while pending:
        request = DescribeAclsRequest(
            resource_type_filter=rp.resource_type,
            resource_name_filter=rp.resource_name,
            pattern_type_filter=rp.pattern_type,
            principal_filter=everything.principal,
            host_filter=everything.host,
            operation=everything.operation,
            permission_type=everything.permission_type,
        )
        response = admin._manager.run(admin._manager.send, request, pending[0])
        acls, _ = admin._convert_describe_acls_response_to_acls(response)
        if {key(a) for a in acls} == wanted:
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise PlatformError(
                "acl_apply_failed", f"broker {pending[0]} did not serve the new ACLs within {timeout_s:.0f} s"
            )
        time.sleep(0.2)
