"""A local HTTP server (127.0.0.1 only) that serves a folder the way object stores serve COGs, for the demo and
the tests: byte ranges (``Range: bytes=a-b`` answered ``206`` with ``Content-Range``), ``Content-Length`` on every
answer, and a small STAC API (landing page and ``/search``, GET and POST) over the items in
``<folder>/api-items.json``.

Every request is logged (path, range, bytes sent), so a caller can tell what was fetched and what was not.
Faults a real store shows can be injected: latency, files that go away, 503s under load, signatures that
expire, and the whole server going away part-way (and coming back: a new server on the same ``port``).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

API_ITEMS = "api-items.json"
"""A FeatureCollection in the served folder: what the STAC API searches."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None
    status: int
    sent: int


class CatalogServer:
    """``with CatalogServer(folder) as server: server.url("item.json")``."""

    def __init__(self, folder: Path, port: int = 0):
        self.folder = Path(folder)
        self.requests: list[Request] = []
        self.redirects: dict[str, str] = {}
        self.faults: dict[str, tuple[int, int]] = {}
        """Path -> (requests answered normally first, HTTP status of every later answer): a file that goes away."""
        self.busy_every: int | None = None
        """When set, every n-th request for a ``.tif`` is answered 503 (a busy object store)."""
        self.drop_every: int | None = None
        """When set, every n-th request for a ``.tif`` has its connection closed without an answer (a reset)."""
        self.latency = 0.0
        """Seconds each request waits before it is answered (a distant store)."""
        self.signatures_expire_at: int | None = None
        """When set, ``.tif`` requests must carry a ``?sig=`` from :meth:`signature` (else 403), and once this many
        ``.tif`` requests were made, every signature given until then has expired (signed links outliving their
        token); signatures given later stay valid."""
        self.stop_after: int | None = None
        """When set, the server goes away after this many ``.tif`` requests: it closes its port and every open
        connection, and answers nothing more."""
        self.stopped = False
        self._generation = secrets.token_hex(4)
        self._tif_requests = 0
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> CatalogServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.stopped:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def signature(self) -> str:
        """A fresh signature for ``.tif`` requests (see :attr:`signatures_expire_at`)."""
        return f"token-{self._generation}-{self._tif_requests}"

    def signature_valid(self, signature: str | None) -> bool:
        prefix = f"token-{self._generation}-"
        if not signature or not signature.startswith(prefix) or not signature[len(prefix):].isdigit():
            return False
        expiry = self.signatures_expire_at or 0
        return int(signature[len(prefix):]) >= expiry or self._tif_requests <= expiry

    def stop(self) -> None:
        """Go away: no new connections, and no answer on open ones."""
        self.stopped = True
        threading.Thread(target=lambda: (self._httpd.shutdown(), self._httpd.server_close()), daemon=True).start()

    @property
    def root(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, relative: str) -> str:
        return f"{self.root}/{relative.lstrip('/')}"

    def log(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def requested(self, name: str) -> list[Request]:
        """Requests whose path ends with ``name``."""
        return [request for request in self.requests if request.path.split("?", 1)[0].endswith(name)]

    def bytes_sent(self, suffix: str = "") -> int:
        return sum(request.sent for request in self.requests if request.path.split("?", 1)[0].endswith(suffix))

    def next_tif_request(self) -> int:
        with self._lock:
            self._tif_requests += 1
            return self._tif_requests

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()


class _Handler(BaseHTTPRequestHandler):
    server_state: CatalogServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if urlsplit(self.path).path.rstrip("/") == "/api/search":
            self._json(_search(self.server_state, body))
        else:
            self._answer(404, b"not found")

    def _serve(self, head: bool) -> None:
        state = self.server_state
        path = urlsplit(self.path).path
        if state.stopped:
            self.close_connection = True
            return
        time.sleep(state.latency)
        if path.endswith(".tif") and not self._tif_request_allowed(state):
            return
        if path in state.redirects:
            self.send_response(302)
            self.send_header("Location", state.redirects[path])
            self.send_header("Content-Length", "0")
            state.log(Request(self.command, self.path, None, 302, 0))
            self.end_headers()
            return
        if path in state.faults:
            remaining, status = state.faults[path]
            if remaining <= 0:
                self._answer(status, b"injected fault")
                return
            state.faults[path] = (remaining - 1, status)
        if path.rstrip("/") == "/api":
            self._json(_landing_page(state))
            return
        if path.rstrip("/") == "/api/search":
            query = {key: values[0] for key, values in parse_qs(urlsplit(self.path).query).items()}
            self._json(_search(state, query))
            return
        file = (state.folder / path.lstrip("/")).resolve()
        if not file.is_file() or state.folder.resolve() not in file.parents:
            self._answer(404, b"not found")
            return
        size = file.stat().st_size
        wanted = self.headers.get("Range")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted or "")
        if match and int(match.group(1)) < size:
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            start, end = 0, size - 1
            self.send_response(200)
        length = end - start + 1
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        state.log(Request(self.command, self.path, wanted, 206 if match else 200, 0 if head else length))
        self.end_headers()
        if not head:
            with file.open("rb") as opened:
                opened.seek(start)
                self.wfile.write(opened.read(length))

    def _tif_request_allowed(self, state: CatalogServer) -> bool:
        """Count the request and apply the ``.tif`` faults; ``False`` when it was answered (or dropped) here."""
        count = state.next_tif_request()
        if state.stop_after is not None and count > state.stop_after:
            state.stop()
            self.close_connection = True
            return False
        if state.drop_every and count % state.drop_every == 0:
            state.log(Request(self.command, self.path, self.headers.get("Range"), 0, 0))
            self.close_connection = True
            return False
        if state.busy_every and count % state.busy_every == 0:
            self._answer(503, b"slow down")
            return False
        if state.signatures_expire_at is not None:
            given = parse_qs(urlsplit(self.path).query).get("sig", [None])[0]
            if not state.signature_valid(given):
                self._answer(403, b"AuthenticationFailed: signature expired or missing")
                return False
        return True

    def _json(self, document: dict) -> None:
        self._answer(200, json.dumps(document).encode(), "application/json")

    def _answer(self, status: int, body: bytes, media: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        self.server_state.log(Request(self.command, self.path, None, status, len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _landing_page(state: CatalogServer) -> dict:
    return {
        "type": "Catalog", "id": "local-test-api", "description": "A STAC API for tests", "stac_version": "1.0.0",
        "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
        "links": [
            {"rel": "self", "href": state.url("api"), "type": "application/json"},
            {"rel": "root", "href": state.url("api"), "type": "application/json"},
            {"rel": "search", "href": state.url("api/search"), "type": "application/geo+json", "method": "GET"},
            {"rel": "search", "href": state.url("api/search"), "type": "application/geo+json", "method": "POST"},
        ],
    }


def _search(state: CatalogServer, query: dict) -> dict:
    """Items of ``api-items.json`` matching ``collections``, ``datetime`` (a range A/B) and ``bbox``."""
    features = json.loads((state.folder / API_ITEMS).read_text())["features"]
    collections = query.get("collections")
    if isinstance(collections, str):
        collections = collections.split(",")
    bbox = query.get("bbox")
    if isinstance(bbox, str):
        bbox = [float(value) for value in bbox.split(",")]
    period = query.get("datetime")
    found = []
    for feature in features:
        if collections and feature.get("collection") not in collections:
            continue
        if bbox and not _overlaps(feature["bbox"], bbox):
            continue
        if period and not _within(feature["properties"]["datetime"], period):
            continue
        found.append(feature)
    limit = int(query.get("limit") or len(found) or 1)
    return {"type": "FeatureCollection", "features": found[:limit], "links": []}


def _overlaps(first: list[float], second: list[float]) -> bool:
    return first[0] < second[2] and second[0] < first[2] and first[1] < second[3] and second[1] < first[3]


def _within(moment: str, period: str) -> bool:
    start, _, end = period.partition("/")
    when = datetime.fromisoformat(moment.replace("Z", "+00:00"))

    def bound(text: str, default: datetime) -> datetime:
        if text in ("", ".."):
            return default
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return value if value.tzinfo else value.replace(tzinfo=when.tzinfo)

    return bound(start, datetime.min.replace(tzinfo=when.tzinfo)) <= when <= bound(end or start, datetime.max.replace(tzinfo=when.tzinfo))
