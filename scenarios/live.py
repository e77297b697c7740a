"""``darkfab run --live``: serve the view page while the simulation runs.

A :class:`LiveView` is handed to :func:`~darkfab.scenarios.runner.run_scenario`. The runner
calls :meth:`LiveView.attach` once the plant is built and :meth:`LiveView.tick` between slices
of simulated time (``SLICES`` per horizon). A tick publishes at most every ``interval_s`` wall
seconds: it takes the event rows recorded since the last publication (the log's pending column
lists, and the batches flushed in between, seen through the log's ``batch_listeners``), turns
them into one chunk with the same :class:`~darkfab.scenarios.view.ViewBuilder` as
``darkfab view``, serialises it once, and appends it to a list. The HTTP thread (stdlib
``http.server`` on 127.0.0.1) only joins the JSON strings a client has not seen yet, so a
polling browser costs the simulation one chunk build per publication, whatever the number of
clients.

Endpoints: ``/`` the page, ``/data?from=N`` ``{"n": total chunks, "chunks": [chunk N...],
"done": bool}``.
"""

from __future__ import annotations

import json
from collections import Counter
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pyarrow as pa

from .view import DS, ROW_COLUMNS, ViewBuilder, _clean, render_page, rows_of

__all__ = ["LiveView"]

_COLUMNS = ROW_COLUMNS


class _EventTap:
    """The event rows recorded since the last :meth:`take`, from the log's public column lists
    and flushed batches (read on the simulation thread only)."""

    def __init__(self, log) -> None:
        self.log = log
        self.seen = 0  # rows handed out so far
        self.flushed: list[dict[str, list]] = []
        self._pos = [log.schema.names.index(c) - 2 for c in _COLUMNS]  # in log.columns
        log.batch_listeners.append(self._on_batch)

    def _on_batch(self, table: pa.Table) -> None:
        start = self.log.rows_written  # listeners run before rows_written grows
        skip = self.seen - start
        if skip < table.num_rows:
            self.flushed.append(rows_of(table.slice(max(0, skip))))
        self.seen = max(self.seen, start + table.num_rows)

    def take(self) -> dict[str, list]:
        log = self.log
        first = max(0, self.seen - log.rows_written)
        cols = log.columns
        parts, self.flushed = self.flushed, []
        parts.append({c: cols[p][first:] for c, p in zip(_COLUMNS, self._pos)})
        self.seen = log.rows_written + len(cols[0])
        if len(parts) == 1:
            return parts[0]
        return {c: [x for p in parts for x in p[c]] for c in _COLUMNS}


class LiveView:
    """Publishes the running simulation to a local web page.

    Parameters
    ----------
    port:
        TCP port on 127.0.0.1 (0: a free port, see :attr:`url` after :meth:`attach`).
    interval_s:
        Minimum wall time between two publications.
    """

    def __init__(self, port: int = 8765, interval_s: float = 0.5) -> None:
        self.port = port
        self.interval_s = interval_s
        self.chunks: list[str] = []
        self.done = False
        self._lock = threading.Lock()
        self._last = -1e9
        self._server: ThreadingHTTPServer | None = None
        self.page = ""
        self.publications = 0
        self.publish_s = 0.0  # wall time spent building chunks on the simulation thread

    @property
    def serving(self) -> bool:
        """Whether the HTTP server is up (after :meth:`attach`, before :meth:`close`)."""
        return self._server is not None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # --- simulation side ----------------------------------------------------------------
    def attach(self, plant, summary: dict[str, Any]) -> None:
        """Start serving; ``summary`` holds ``scenario``, ``run_id`` and the
        ``resolved_scenario``."""
        self.builder = ViewBuilder(summary)
        self.tap = _EventTap(plant.model.log)
        self.wip = 0
        self.last_t = 0.0
        self.page = render_page(_clean(self.builder.meta), "", live=True)
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="darkfab-live",
                         daemon=True).start()
        sys.stderr.write(f"live view: {self.url}\n")
        sys.stderr.flush()

    def tick(self, now: float) -> None:
        """Called between slices of simulated time: publish if ``interval_s`` has passed."""
        if time.perf_counter() - self._last >= self.interval_s:
            self.publish(now)

    def publish(self, now: float) -> None:
        w0 = time.perf_counter()
        events = self.tap.take()
        chunk = self.builder.feed(events, now)
        chunk["ts"] = self._series(events, now)
        text = json.dumps(chunk, separators=(",", ":"))  # ints and finite floats only
        with self._lock:
            self.chunks.append(text)
        self.publications += 1
        self._last = time.perf_counter()
        self.publish_s += self._last - w0

    def _series(self, events: dict[str, list], now: float) -> list[list] | None:
        """One point at ``now``: completions per hour since the last point, WIP now
        (create + produce − consume − complete − scrap)."""
        if now <= self.last_t:
            return None
        n = Counter(events["kind"])
        self.wip += n["create"] + n["produce"] - n["consume"] - n["complete"] - n["scrap"]
        thr = 3600.0 * n["complete"] / (now - self.last_t)
        self.last_t = now
        return [[int(round(now * DS))], [round(thr, 3)], [self.wip]]

    def finish(self, now: float) -> None:
        """The run is over: publish the rest and tell the clients."""
        self.publish(now)
        self.done = True

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait(self) -> None:
        """Keep serving until Ctrl-C (after the run, on a terminal)."""
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass

    # --- HTTP side ----------------------------------------------------------------------
    def _handler(self):
        live = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                u = urlparse(self.path)
                if u.path in ("/", "/index.html"):
                    self._send(live.page.encode(), "text/html; charset=utf-8")
                elif u.path == "/data":
                    try:
                        first = int(parse_qs(u.query).get("from", ["0"])[0])
                    except ValueError:
                        first = 0
                    with live._lock:
                        new = live.chunks[max(0, first):]
                        n, done = len(live.chunks), live.done
                    body = (f'{{"n":{n},"done":{json.dumps(done)},"chunks":['
                            + ",".join(new) + "]}")
                    self._send(body.encode(), "application/json")
                else:
                    self.send_error(404)

            def _send(self, body: bytes, ctype: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args) -> None:  # noqa: A002 - quiet
                pass

        return Handler

