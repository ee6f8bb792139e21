"""A local HTTP server on 127.0.0.1 serving bytes by path, with the faults a download must survive
(a connection cut, a Range ignored, an error status): the model manager's tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    """Serves bytes by path. Per path: `cut_first` = close the connection after that many body bytes
    on the first request; `ignore_range` = answer every request with 200 and the whole file;
    `fail_first` = answer the first request with that HTTP status. Records (path, Range header,
    status) per request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.opts: dict[str, dict] = {}
        self.requests: list[tuple[str, str | None, int]] = []
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                rng = self.headers.get("Range")
                if path not in srv.files:
                    srv.requests.append((path, rng, 404))
                    self.send_error(404)
                    return
                data, opts = srv.files[path], srv.opts.get(path, {})
                nth = sum(1 for p, _, _ in srv.requests if p == path) + 1
                if opts.get("fail_first") and nth == 1:
                    srv.requests.append((path, rng, opts["fail_first"]))
                    self.send_error(opts["fail_first"])
                    return
                start = 0
                if rng and not opts.get("ignore_range"):
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    srv.requests.append((path, rng, 206))
                else:
                    self.send_response(200)
                    srv.requests.append((path, rng, 200))
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if opts.get("cut_first") and nth == 1:
                    self.wfile.write(body[: opts["cut_first"]])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def add(self, path: str, data: bytes, **opts) -> str:
        self.files[path] = data
        self.opts[path] = opts
        return self.base + path
