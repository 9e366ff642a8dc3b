"""An HTTP relay in front of a real MLflow server that can hold one chosen request.

It passes every request through unchanged until ``hold(path, body)`` first says yes; that request
is never answered (the client waits, as on a stalled network) and ``held`` is set, so a test
knows the process is exactly there and can kill it. A relay made ``paused`` lets nothing through
until ``resume()``: its process gets ready (imports, data, study) and waits at its first request.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP = {"host", "connection", "transfer-encoding", "content-length", "keep-alive"}


class Relay:
    def __init__(self, upstream_port: int, hold: Callable[[str, bytes], bool] | None = None, paused: bool = False) -> None:
        self.upstream_port, self.hold = upstream_port, hold
        self.held, self._release, self._go = threading.Event(), threading.Event(), threading.Event()
        if not paused:
            self._go.set()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                relay._go.wait()
                if relay.hold is not None and not relay.held.is_set() and relay.hold(self.path, body):
                    relay.held.set()
                    relay._release.wait()
                    return
                conn = http.client.HTTPConnection("127.0.0.1", relay.upstream_port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn.request(self.command, self.path, body, headers)
                reply = conn.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for k, v in reply.getheaders():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def resume(self) -> None:
        self._go.set()

    def close(self) -> None:
        self._go.set()
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
