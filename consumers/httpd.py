"""The HTTP side of an ally service: its live page, ``/stream`` (SSE), ``/metrics`` and ``/healthz``.

Standard library only (:class:`http.server.ThreadingHTTPServer`): one thread per connection,
so a subscriber that stops reading blocks nothing but its own thread (see :mod:`consumers.sse`
for the queue overflow policy). Responses use HTTP/1.0 framing: the stream ends when the
connection closes, which every SSE client handles.

- ``GET /stream[?kind=track_update,alert]`` — ``text/event-stream``; ``id:`` is the event id,
  ``event:`` the kind, ``data:`` the event as JSON. A comment line is sent every
  ``keepalive_s`` when idle, which also detects clients that went away.
- ``GET /metrics`` — this service's Prometheus registry (text exposition format).
- ``GET /healthz`` — JSON health; 200 when healthy, 503 when not.
- ``GET /`` — the ally's live picture (:mod:`consumers.livepage`): a map drawn from ``/stream``,
  with ``/static/...`` (its scripts, style and coastlines), ``/areas.json`` (alert and EEZ areas)
  and ``GET /latency`` (JSON ``{"rows": [...]}``: the ledger's per-hop latency rows, in ms, since
  the service started; 404 when the service gave no ledger).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from consumers.livepage import LivePageError, live_page_assets
from consumers.sse import SseHub, SseItem
from schemas.models import EventKind

#: Seconds a subscriber's socket may accept nothing before the subscriber is disconnected.
DEFAULT_WRITE_TIMEOUT_S = 10.0
#: Seconds between keep-alive comments on an idle stream.
DEFAULT_KEEPALIVE_S = 1.0
#: Seconds one ``/latency`` answer is reused: each open page asks once a second, and building the
#: rows folds and merges the ledger's histograms under the lock its consumer loop folds with.
LATENCY_REUSE_S = 0.5


@dataclass
class HttpContext:
    """What the handlers need from the service."""

    hub: SseHub
    registry: CollectorRegistry
    health: Callable[[], tuple[bool, dict[str, Any]]]
    on_sse_written: Callable[[list[SseItem], int], None]
    on_disconnect: Callable[[str], None]
    write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S
    keepalive_s: float = DEFAULT_KEEPALIVE_S
    send_buffer_bytes: int | None = None
    #: Per-hop latency rows for ``/latency`` (e.g. :meth:`consumers.ledger.Ledger.rows`).
    latency: Callable[[], list[dict[str, Any]]] | None = None


def parse_kinds(query: str) -> frozenset[EventKind] | None:
    """The ``kind`` filter of a ``/stream`` query (comma-separated, repeatable); None = all kinds.

    Raises ``ValueError`` naming an unknown kind.
    """
    values = [v for raw in parse_qs(query).get("kind", []) for v in raw.split(",") if v]
    if not values:
        return None
    kinds = set()
    for value in values:
        try:
            kinds.add(EventKind(value))
        except ValueError:
            raise ValueError(f"unknown event kind {value!r}") from None
    return frozenset(kinds)


class _Handler(BaseHTTPRequestHandler):
    server: AllyHttpServer
    server_version = "trilink-ally"
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines of a live stream would drown the service's own log."""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/stream":
            self._stream(parts.query)
        elif parts.path == "/metrics":
            body = generate_latest(self.server.context.registry)
            self._reply(200, CONTENT_TYPE_LATEST, body)
        elif parts.path == "/healthz":
            healthy, detail = self.server.context.health()
            self._reply(200 if healthy else 503, "application/json", json.dumps(detail).encode())
        elif parts.path == "/latency" and self.server.context.latency is not None:
            body = self.server.latency_json(self.server.context.latency)
            self._reply(200, "application/json", body, cache=False)
        else:
            self._page(parts.path)

    def _page(self, path: str) -> None:
        try:
            asset = live_page_assets().get(path)
        except LivePageError as exc:
            self._reply(503, "text/plain; charset=utf-8", f"{exc}\n".encode())
            return
        if asset is None:
            self._reply(404, "text/plain; charset=utf-8", b"not found: try /, /stream, /metrics, /healthz\n")
        else:
            self._reply(200, asset.content_type, asset.body, cache=False)

    def _reply(self, status: int, content_type: str, body: bytes, *, cache: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if not cache:
            self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, query: str) -> None:
        ctx = self.server.context
        try:
            kinds = parse_kinds(query)
        except ValueError as exc:
            self._reply(400, "text/plain; charset=utf-8", f"{exc}\n".encode())
            return
        sock: socket.socket = self.connection
        if ctx.send_buffer_bytes:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, ctx.send_buffer_bytes)
        sock.settimeout(ctx.write_timeout_s)
        queue = ctx.hub.subscribe(kinds)
        reason = "shutdown"
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("X-Accel-Buffering", "no")
            self.end_headers()
            self.wfile.write(b": trilink ally stream\nretry: 1000\n\n")
            while not queue.closed:
                items = queue.take(ctx.keepalive_s)
                if items:
                    self.wfile.write(b"".join(item.frame for item in items))
                    ctx.on_sse_written(items, time.time_ns())
                elif not queue.closed:
                    self.wfile.write(b": keepalive\n\n")
        except TimeoutError:
            reason = "write_timeout"
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            reason = "client_closed"
        except OSError:
            reason = "socket_error"
        finally:
            ctx.hub.unsubscribe(queue)
            ctx.on_disconnect(reason)


class AllyHttpServer(ThreadingHTTPServer):
    """A threading HTTP server bound to ``host:port`` (port 0 = any free port; see :attr:`port`)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str, port: int, context: HttpContext) -> None:
        self.context = context
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None
        self._latency_lock = threading.Lock()
        self._latency: tuple[float, bytes] = (float("-inf"), b"")

    def latency_json(self, rows: Callable[[], list[dict[str, Any]]]) -> bytes:
        """``{"rows": rows()}`` as JSON, one answer reused for :data:`LATENCY_REUSE_S`."""
        with self._latency_lock:
            made, body = self._latency
            now = time.monotonic()
            if now - made >= LATENCY_REUSE_S:
                body = json.dumps({"rows": rows()}).encode()
                self._latency = (now, body)
            return body

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, end every stream (their queues are closed by the hub) and close."""
        self.context.hub.close()
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
        self.server_close()
