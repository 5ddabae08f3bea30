"""HTTP in front of a twin's pure services, on the link-local addresses inside its namespace.

One ``ThreadingHTTPServer`` per address and port; each request becomes an ``answers.Request``
and the service's ``Reply`` is written back as it is. A service may record what the guest
sent (the Azure wireserver's health reports) through the callback it was built with.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from imagekit.providers.twins.answers import Reply, Request, Service

MAX_BODY = 1024 * 1024  # a guest's PUT or POST: host keys, health reports — small documents


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: Service):
        super().__init__(address, _Handler)
        self.service = service


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_BODY)) if length > 0 else b""
        request = Request(
            method=self.command,
            target=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            host=str(self.server.server_address[0]),
        )
        try:
            reply = self.server.service(request)
        except Exception as exc:  # a twin bug must show as a 500, not a dead server
            reply = Reply(500, f"twin service error: {exc}\n".encode())
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:
        # One line per request into the node's service log (stderr of the supervisor).
        super().log_message(format, *args)


def serve(service: Service, address: str, port: int = 80) -> ThreadingHTTPServer:
    """Start serving ``service`` on ``address:port`` in a daemon thread; the server."""
    server = _Server((address, port), service)
    threading.Thread(target=server.serve_forever, daemon=True, name=f"http-{address}").start()
    return server


__all__ = ["serve"]
