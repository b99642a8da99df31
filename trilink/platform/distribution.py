"""Where the Kafka jars come from: ``KAFKA_HOME`` or Maven Central (via ``deploy/kafka/pom.xml``).

Resolved jars are cached outside the work tree under ``kafka_cache_dir/<version>/`` with a
manifest of SHA-256 sums, so later starts need neither Maven nor the network, and a corrupt
cache is noticed and resolved again instead of crashing the JVM.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from trilink.errors import PlatformError
from trilink.resources import package_path

POM = package_path("deploy", "kafka", "pom.xml")
LOG4J_CONFIG = package_path("deploy", "kafka", "log4j2.yaml")
MANIFEST = "manifest.json"
MIN_JAVA_MAJOR = 17
_SERVER_JAR = re.compile(r"^kafka_2\.13-(\d+\.\d+\.\d+)\.jar$")
_FALLBACK_HINT = (
    "Alternatively point KAFKA_HOME at an unpacked Apache Kafka 4.x release, "
    "or TRILINK_BOOTSTRAP=host:port at a running cluster (then trilink starts nothing)."
)


@dataclass(frozen=True)
class KafkaDistribution:
    """A runnable Kafka: its version and the classpath to pass to ``java -cp``."""

    version: str
    lib_dir: Path
    source: str  # "maven" or "KAFKA_HOME"

    @property
    def classpath(self) -> str:
        return str(self.lib_dir / "*")


def java_major_version(java: str = "java") -> int:
    """The major version of ``java`` on PATH, or a typed error saying what to install."""
    if shutil.which(java) is None:
        raise PlatformError(
            "java_missing",
            f"'{java}' was not found on PATH; trilink needs Java {MIN_JAVA_MAJOR} or newer "
            "to run Apache Kafka (Debian: apt-get install openjdk-17-jre-headless).",
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False, timeout=30)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        raise PlatformError("java_unknown", f"could not read the Java version from: {out.stderr!r}")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_x" style
        major = int(match.group(2))
    return major


def require_java() -> None:
    major = java_major_version()
    if major < MIN_JAVA_MAJOR:
        raise PlatformError(
            "java_too_old",
            f"Java {major} found; Apache Kafka 4 needs Java {MIN_JAVA_MAJOR} or newer.",
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _jar_is_sound(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as jar:
            return jar.testzip() is None
    except (zipfile.BadZipFile, OSError):
        return False


def _cached(cache_dir: Path) -> KafkaDistribution | None:
    """The newest complete cached resolution, if its manifest still matches its jars."""
    if not cache_dir.is_dir():
        return None
    candidates = sorted(
        (d for d in cache_dir.iterdir() if (d / MANIFEST).is_file()),
        key=lambda d: tuple(int(p) for p in d.name.split(".") if p.isdigit()),
        reverse=True,
    )
    for version_dir in candidates:
        manifest = json.loads((version_dir / MANIFEST).read_text())
        lib = version_dir / "lib"
        jars: dict[str, str] = manifest["jars"]
        sound = all((lib / name).is_file() and _sha256(lib / name) == sha for name, sha in jars.items())
        if sound:
            return KafkaDistribution(manifest["version"], lib, "maven")
        # A jar changed or vanished since it was resolved: forget this copy, resolve again.
        shutil.rmtree(version_dir, ignore_errors=True)
    return None


def _run_maven(out_dir: Path) -> None:
    if shutil.which("mvn") is None:
        raise PlatformError(
            "maven_missing",
            "'mvn' was not found on PATH; trilink resolves Apache Kafka from Maven Central "
            "with Maven (Debian: apt-get install maven). " + _FALLBACK_HINT,
        )
    cmd = [
        "mvn",
        "--batch-mode",
        "--quiet",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={out_dir}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise PlatformError(
            "maven_failed",
            "Maven could not resolve Apache Kafka from Maven Central (is it reachable?). "
            + _FALLBACK_HINT
            + f"\n{tail}",
        )


def resolve_from_maven(cache_dir: Path) -> KafkaDistribution:
    """Resolve the newest Kafka 4.x with Maven into the cache and record a manifest."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".resolving-") as tmp:
        staging = Path(tmp) / "lib"
        _run_maven(staging)
        jars = sorted(p for p in staging.iterdir() if p.suffix == ".jar")
        versions = [m.group(1) for p in jars if (m := _SERVER_JAR.match(p.name))]
        if not versions:
            raise PlatformError("maven_failed", "Maven finished but no kafka_2.13 jar was resolved.")
        broken = [p.name for p in jars if not _jar_is_sound(p)]
        if broken:
            raise PlatformError(
                "jar_cache_corrupt",
                f"resolved jars are corrupt even after a fresh copy: {', '.join(broken)}; "
                "delete them from ~/.m2/repository and run again.",
            )
        version = versions[0]
        target = cache_dir / version
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        staging.rename(target / "lib")
        manifest = {
            "version": version,
            "jars": {p.name: _sha256(target / "lib" / p.name) for p in jars},
        }
        (target / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return KafkaDistribution(version, target / "lib", "maven")


def from_kafka_home(kafka_home: Path) -> KafkaDistribution:
    lib = kafka_home / "libs"
    servers = [m.group(1) for p in lib.glob("kafka_2.13-*.jar") if (m := _SERVER_JAR.match(p.name))]
    if not servers:
        raise PlatformError(
            "kafka_home_invalid",
            f"KAFKA_HOME={kafka_home} has no libs/kafka_2.13-<version>.jar; "
            "point it at an unpacked Apache Kafka release.",
        )
    return KafkaDistribution(servers[0], lib, "KAFKA_HOME")


def locate(cache_dir: Path, kafka_home: Path | None, refresh: bool = False) -> KafkaDistribution:
    """The distribution to run: KAFKA_HOME if set, else the verified cache, else Maven."""
    require_java()
    if kafka_home is not None:
        return from_kafka_home(kafka_home)
    if not refresh:
        cached = _cached(cache_dir)
        if cached is not None:
            return cached
    return resolve_from_maven(cache_dir)
