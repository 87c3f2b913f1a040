"""An HTTP server of a directory on a free localhost port that answers one path with a fault (404,
500, garbage, given bytes, or no answer at all): the hostile-store tests and
``benchmarks/hostile_inputs.py`` serve stores through it."""
from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

#: How long a "hang" fault keeps a request unanswered (released at once when the server stops).
HANG_S = 70.0


class FaultyHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory, but answers the path ending in ``fault_path`` with ``fault``: an HTTP status
    code ("404", "500"), ``garbage``, ``bytes`` (the handler's ``body``) or ``hang``. Make one with
    :func:`handler`."""

    fault_path = ""
    fault = ""
    body = b""
    release = threading.Event()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.fault_path and self.path.endswith(self.fault_path):
            if self.fault == "hang":
                self.release.wait(HANG_S)
                return
            if self.fault in ("garbage", "bytes"):
                body = self.body if self.fault == "bytes" else b"\x00garbage \xff" * 10
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_error(int(self.fault))
            return
        super().do_GET()


def handler(fault_path: str, fault: str, body: bytes = b"") -> type[FaultyHandler]:
    """A handler class of its own (its own ``release`` event) answering ``fault_path`` with ``fault``."""
    return type("Handler", (FaultyHandler,), {"fault_path": fault_path, "fault": fault, "body": body,
                                              "release": threading.Event()})


@contextlib.contextmanager
def serving(directory: Path, answer: type[FaultyHandler], path: str = "") -> Iterator[str]:
    """Serve ``directory`` with ``answer`` until the block ends; yields the URL of ``path`` in it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(answer, directory=str(directory)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}" + (f"/{path}" if path else "")
    finally:
        answer.release.set()
        server.shutdown()
        server.server_close()
