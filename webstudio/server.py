"""The studio's HTTP server: the page, its static files and the JSON API over one job folder.

The standard library's ThreadingHTTPServer is enough for one reviewer and a dozen routes (measured: the
page and its data load in well under a second for 160 lines in 3 languages), and it adds no dependency.
What makes it safe to run:

- it listens on 127.0.0.1 unless told otherwise, and anywhere else only with a token (cookie, bearer
  header, or `?token=` once on the page's address);
- it serves fixed routes only: the package's own static files by exact name, and the job's media by
  track name; no route takes a file path, so nothing outside the job folder can be reached;
- requests that change anything must be JSON with the X-Studio header from the page's own origin (a
  cross-site form or script cannot send them), and the Host header must be the studio's own (DNS
  rebinding);
- its log lines hold the method, the path without its query and the status: never a body, so never
  script text, and never the token.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import mimetypes
import re
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from webstudio.job import StudioError, StudioJob
from webstudio.redub import Redubber, estimate

log = logging.getLogger("qwen_dub.studio")
COOKIE = "studio_token"
MAX_BODY = 1 << 20  # an edit is a few hundred bytes
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".txt": "text/plain; charset=utf-8"}  # fmt: skip
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_LINE = re.compile(r"^/api/lines/(\d+)$")
_CAST = re.compile(r"^/api/cast/([A-Za-z0-9_.\-]{1,64})$")
_VIDEO = re.compile(r"^/media/video/([a-z]{2}|original)\.mp4$")
_CAPTIONS = re.compile(r"^/media/captions/([a-z]{2}|original)\.vtt$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def static_files() -> dict[str, Any]:
    """The page's files shipped in the package (webstudio/static/), by name."""
    folder = resources.files("webstudio") / "static"
    return {item.name: item for item in folder.iterdir() if item.is_file()}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StudioServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        job_root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        deployment: str | None = None,
    ) -> None:
        if not is_loopback(host) and not token:
            raise ValueError("a studio reachable from other machines needs a token")
        self.job = StudioJob(job_root)
        self.redubber = Redubber(self.job, deployment)
        self.token = token
        self.static = static_files()
        super().__init__((host, port), StudioHandler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = host if ":" not in host else f"[{host}]"
        return f"http://{shown}:{port}/"

    def allowed_hosts(self) -> set[str]:
        host, port = str(self.server_address[0]), self.server_address[1]
        names = {host, f"{host}:{port}"}
        if is_loopback(host):
            names |= {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost", "127.0.0.1"}
        return names


class StudioHandler(BaseHTTPRequestHandler):
    server: StudioServer
    protocol_version = "HTTP/1.1"
    server_version = "qwen-dub-studio"
    sys_version = ""

    # -- plumbing ----------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return  # replaced by log_request below: never the raw request line (its query may hold the token)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = urlsplit(self.path).path
        log.info("studio %s %s %s", self.command, path[:200], code)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                return  # the page was closed or reloaded before its answer came: nothing to report

    def send_json(self, data: Any, status: int = 200) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode(), "application/json; charset=utf-8")

    def send_error_json(self, status: int, message: str) -> None:
        self.send_json({"error": message, "status": status}, status)

    def send_not_found_page(self) -> None:
        body = (
            b"<!doctype html><html lang=en><meta charset=utf-8><title>Not found - qwen-dub studio</title>"
            b"<main><h1>Not found</h1><p role=alert>This studio serves its own page and the media of "
            b"its job only; there is nothing at this address.</p>"
            b"<p><a href=/>Back to the studio</a></p></main></html>"
        )
        self._send(404, body, "text/html; charset=utf-8")

    def authorised(self) -> bool:
        token = self.server.token
        host = (self.headers.get("Host") or "").strip().lower()
        if host not in self.server.allowed_hosts():
            self.send_error_json(403, "unexpected Host header: open the studio at the address it printed")
            return False
        if token is None:
            return True
        given = ""
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            given = auth[len("Bearer ") :]
        cookie = SimpleCookie(self.headers.get("Cookie") or "")
        if not given and COOKIE in cookie:
            given = cookie[COOKIE].value
        query = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
        if query and hmac.compare_digest(query.encode(), token.encode()) and self.command == "GET":
            # the token given once on the address: kept as a cookie, and the address cleaned
            self._send(
                303, b"", "text/plain",
                {"Location": urlsplit(self.path).path or "/",
                 "Set-Cookie": f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"},
            )  # fmt: skip
            return False
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return True
        self.send_error_json(
            401, "this studio needs its token: open the address it printed (with ?token=...)"
        )
        return False

    def read_body(self) -> dict[str, Any]:
        if (self.headers.get("X-Studio") or "") != "1":
            raise StudioError(
                "changes are accepted from the studio's page only (missing X-Studio header)", 403
            )
        origin = self.headers.get("Origin")
        if origin and urlsplit(origin).netloc.lower() not in self.server.allowed_hosts():
            raise StudioError("changes are accepted from the studio's own page only", 403)
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            raise StudioError("send the change as JSON (Content-Type: application/json)", 415)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise StudioError("request too large", 413)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise StudioError("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise StudioError("the request body must be a JSON object")
        return body

    # -- routes ------------------------------------------------------------------------------------

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        if not self.authorised():
            return
        path = unquote(urlsplit(self.path).path)
        job = self.server.job
        try:
            if path in ("/", "/index.html"):
                return self.send_static("index.html")
            if path.startswith("/static/"):
                return self.send_static(path[len("/static/") :])
            if path == "/api/status":
                return self.send_json({"job": job.summary(), "redub": self.server.redubber.status()})
            if path == "/api/job":
                return self.send_json(job.summary())
            if path == "/api/lines":
                return self.send_json(job.view())
            if path == "/api/estimate":
                job.check()
                return self.send_json(estimate(job))
            if path == "/api/waveform":
                from webstudio.media import waveform

                job.check()
                return self.send_json(waveform(job))
            if path == "/api/voices":
                return self.send_json(self.voices())
            found = _VIDEO.match(path)
            if found:
                from webstudio.media import preview_video

                job.check()
                return self.send_file(preview_video(job, found.group(1)), "video/mp4")
            found = _CAPTIONS.match(path)
            if found:
                from webstudio.media import captions

                job.check()
                return self.send_file(captions(job, found.group(1)), "text/vtt; charset=utf-8")
        except StudioError as exc:
            return self.send_error_json(exc.status, str(exc))
        if path.startswith(("/api/", "/media/")):
            return self.send_error_json(404, "no such address in this studio")
        return self.send_not_found_page()

    def do_PATCH(self) -> None:  # noqa: N802
        if not self.authorised():
            return
        path = urlsplit(self.path).path
        job = self.server.job
        try:
            body = self.read_body()
            if self.server.redubber.status()["state"] == "running":  # its flow run may not hold the lock yet
                raise StudioError("a re-dub is running: edits are refused until it ends", 423)
            found = _LINE.match(path)
            if found:
                job.edit_line(int(found.group(1)), body)
                return self.send_json(job.view())
            found = _CAST.match(path)
            if found:
                job.edit_cast(found.group(1), body)
                return self.send_json(job.view())
        except StudioError as exc:
            return self.send_error_json(exc.status, str(exc))
        self.send_error_json(404, "no such address in this studio")

    def do_POST(self) -> None:  # noqa: N802
        if not self.authorised():
            return
        path = urlsplit(self.path).path
        job = self.server.job
        try:
            self.read_body()
            if path == "/api/estimate":
                job.check()
                return self.send_json(estimate(job))
            if path == "/api/redub":
                job.check()
                return self.send_json(self.server.redubber.start(), 202)
        except StudioError as exc:
            return self.send_error_json(exc.status, str(exc))
        self.send_error_json(404, "no such address in this studio")

    # -- bodies ------------------------------------------------------------------------------------

    def voices(self) -> list[str]:
        from models.registry import tts_engine

        config = self.server.job.run_config()
        return [v.name for v in tts_engine(config.tts).voices(config)]

    def send_static(self, name: str) -> None:
        item = self.server.static.get(name)  # exact names only: "../x" or "a/b" are simply not there
        if item is None:
            if name.endswith((".js", ".css")) or "/" in name or ".." in name:
                return self.send_error_json(404, "no such file in this studio")
            return self.send_not_found_page()
        suffix = Path(name).suffix
        content_type = STATIC_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._send(200, item.read_bytes(), content_type)

    def send_file(self, path: Path, content_type: str) -> None:
        """A media file, with byte ranges (browsers seek in video by asking for ranges)."""
        size = path.stat().st_size
        start, end = 0, size - 1
        status = 200
        wanted = self.headers.get("Range")
        if wanted:
            found = _RANGE.match(wanted.strip())
            if found is None or (not found.group(1) and not found.group(2)):
                return self.send_error_json(416, "unsupported range")
            if found.group(1):
                start = int(found.group(1))
                end = min(int(found.group(2)), size - 1) if found.group(2) else size - 1
            else:  # the last N bytes
                start = max(0, size - int(found.group(2)))
            if start >= size or start > end:
                return self.send_error_json(416, "range outside the file")
            status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        with path.open("rb") as f:
            f.seek(start)
            left = length
            while left > 0:
                chunk = f.read(min(left, 1 << 16))
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the browser moved on (a seek): nothing to report
                left -= len(chunk)
