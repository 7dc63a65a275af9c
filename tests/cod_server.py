"""A real COD-shaped HTTP server on 127.0.0.1 for tests, serving the shared COD sample.

It answers like COD (``/cod/result?...&format=json`` and ``/cod/<id>.cif``) from
``shared/cod-sample`` (beside the repository, or ``$XRDPIPE_SHARED_DIR``), counts every
request per path, and fails on request, per path:

    server.fail("/cod/1000065.cif", "status", times=2, status=500)   # 500 twice, then OK
    server.fail("/cod/result", "retry_after", times=1, retry_after=1)  # 429 + Retry-After
    server.fail("/cod/1000065.cif", "delay", delay_s=1.0)             # always slow
    server.fail("/cod/1000065.cif", "truncate", times=1)              # a body cut short
    server.fail("/cod/1000065.cif", "cut", times=1)                   # connection closed early
    server.fail("/cod/result", "html")                                 # HTML where JSON asked

``times=None`` means always. The search filters are written independently of xrdpipe's
own matching, so a bug there is not mirrored here.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support import COD_SAMPLE

HTML_ERROR = (
    b"<!DOCTYPE html><html><head><title>COD: error</title></head><body>"
    b"<h1>Too many results</h1><p>Your query returned more entries than the limit.</p>"
    b"</body></html>"
)


def cod_sample_dir() -> Path:
    """The COD sample (``index.json`` and ``cif/``)."""
    return COD_SAMPLE


@dataclass
class Fault:
    """One way a path fails; ``times=None`` fails every time."""

    kind: str
    times: int | None = 1
    status: int = 500
    retry_after: float = 1.0
    delay_s: float = 1.0
    keep_bytes: int = 120


FAULT_KINDS = ("status", "retry_after", "delay", "truncate", "cut", "html", "not_found")

_ELEMENT = re.compile(r"[A-Z][a-z]?")
_CELL = {"a": "a", "b": "b", "c": "c", "alpha": "alpha", "beta": "beta", "gamma": "gamma"}


def _elements(formula: str | None) -> set[str]:
    if not formula:
        return set()
    return set(_ELEMENT.findall(formula))


def _tokens(formula: str) -> set[str]:
    return set(formula.strip("- ").split())


def filter_rows(rows: list[dict[str, Any]], params: dict[str, str]) -> list[dict[str, Any]]:
    """COD's search semantics over index rows (every given parameter must hold)."""
    out = []
    ids = set(params["id"].split(",")) if params.get("id") else None
    must = [params[f"el{i}"] for i in range(1, 9) if params.get(f"el{i}")]
    must_not = [params[f"nel{i}"] for i in range(1, 5) if params.get(f"nel{i}")]
    for row in rows:
        elements = _elements(row.get("formula"))
        nel = row.get("nel")
        if ids is not None and row["file"] not in ids:
            continue
        if any(e not in elements for e in must) or any(e in elements for e in must_not):
            continue
        if "strictmin" in params and (nel is None or int(nel) < int(params["strictmin"])):
            continue
        if "strictmax" in params and (nel is None or int(nel) > int(params["strictmax"])):
            continue
        if "formula" in params and _tokens(row.get("formula") or "") != _tokens(params["formula"]):
            continue
        if "text" in params:
            hay = " ".join(str(row.get(k) or "") for k in ("mineral", "commonname", "doi"))
            if params["text"].lower() not in hay.lower():
                continue
        ok = True
        for key, column in {**_CELL, "v": "vol"}.items():
            value = row.get(column)
            for side in ("min", "max"):
                bound = params.get(f"{key}{side}")
                if bound is None:
                    continue
                if value is None or (
                    float(value) < float(bound) if side == "min" else float(value) > float(bound)
                ):
                    ok = False
        if ok:
            out.append(row)
    return out


class CodTestServer:
    """A threaded COD stand-in; use :meth:`start` / :meth:`stop` (or the fixture).

    Attributes:
        counts: requests per path (query string excluded).
        headers: the headers of the last request per path.
        times: monotonic arrival times per path.
    """

    def __init__(self, sample_dir: Path | None = None) -> None:
        self.sample_dir = Path(sample_dir) if sample_dir else cod_sample_dir()
        self.rows: list[dict[str, Any]] = json.loads(
            (self.sample_dir / "index.json").read_text(encoding="utf-8")
        )
        self.counts: Counter[str] = Counter()
        self.headers: dict[str, dict[str, str]] = {}
        self.times: dict[str, list[float]] = {}
        self.queries: list[dict[str, str]] = []
        self._faults: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def fail(self, path: str, kind: str, times: int | None = 1, **options: Any) -> None:
        """Make ``path`` fail ``times`` times (``None``: always) in the given way."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {kind!r} is not one of {FAULT_KINDS}")
        with self._lock:
            self._faults[path] = Fault(kind=kind, times=times, **options)

    @property
    def requests(self) -> dict[str, int]:
        """A snapshot of :attr:`counts` (requests per path)."""
        with self._lock:
            return dict(self.counts)

    def count(self, path: str) -> int:
        """Requests made so far for ``path``."""
        with self._lock:
            return self.counts[path]

    def total(self) -> int:
        """Requests made so far, all paths."""
        with self._lock:
            return sum(self.counts.values())

    def start(self) -> CodTestServer:
        """Bind 127.0.0.1 on a free port and serve on a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake any delayed handler, close the socket."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- handling -----------------------------------------------------------------------

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            fault = self._faults.get(path)
            if fault is None:
                return None
            if fault.times is not None:
                if fault.times <= 0:
                    return None
                fault.times -= 1
            return fault

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        path = parts.path
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.counts[path] += 1
            self.headers[path] = dict(req.headers.items())
            self.times.setdefault(path, []).append(time.monotonic())
            if path == "/cod/result":
                self.queries.append(params)
        fault = self._take_fault(path)
        status, ctype, body = self._answer(path, params)
        try:
            if fault is not None:
                if self._fault(req, fault, status, ctype, body):
                    return
            self._send(req, status, ctype, body)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up (a timeout test): nothing to do

    def _fault(
        self, req: BaseHTTPRequestHandler, fault: Fault, status: int, ctype: str, body: bytes
    ) -> bool:
        """Apply a fault; ``True`` when the response has been sent."""
        if fault.kind == "status":
            self._send(req, fault.status, "text/plain", b"server error")
        elif fault.kind == "retry_after":
            self._send(
                req, 429, "text/plain", b"slow down", {"Retry-After": f"{fault.retry_after:g}"}
            )
        elif fault.kind == "delay":
            self._stopping.wait(fault.delay_s)
            return False
        elif fault.kind == "truncate":
            self._send(req, status, ctype, body[: fault.keep_bytes])
        elif fault.kind == "cut":
            req.send_response(status)
            req.send_header("Content-Type", ctype)
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            req.wfile.write(body[: fault.keep_bytes])
            req.wfile.flush()
            req.close_connection = True
        elif fault.kind == "html":
            self._send(req, 200, "text/html; charset=utf-8", HTML_ERROR)
        elif fault.kind == "not_found":
            self._send(req, 404, "text/html", b"<html>404 Not Found</html>")
        return True

    @staticmethod
    def _send(
        req: BaseHTTPRequestHandler,
        status: int,
        ctype: str,
        body: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        req.send_response(status)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            req.send_header(key, value)
        req.end_headers()
        req.wfile.write(body)

    def _answer(self, path: str, params: dict[str, str]) -> tuple[int, str, bytes]:
        if path == "/cod/result":
            rows = filter_rows(self.rows, params)
            fmt = params.get("format")
            if fmt == "json":
                return 200, "application/json", json.dumps(rows).encode()
            if fmt == "lst":
                return 200, "text/plain", "".join(f"{r['file']}\n" for r in rows).encode()
            if fmt == "count":
                return 200, "text/plain", f"{len(rows)}\n".encode()
            return 200, "text/html", HTML_ERROR
        match = re.fullmatch(r"/cod/([0-9]+)\.cif", path)
        if match:
            cif = self.sample_dir / "cif" / f"{match.group(1)}.cif"
            if cif.is_file():
                return 200, "chemical/x-cif", cif.read_bytes()
        return 404, "text/html", b"<html>404 Not Found</html>"
