"""A loopback server speaking the part of the Hugging Face hub's HTTP protocol that huggingface_hub uses to
fetch models (set HF_ENDPOINT to its URL before huggingface_hub is imported, e.g. in a subprocess):

- GET  /api/models/{repo_id}[/revision/{rev}]        model info; `siblings` with sizes (files_metadata)
- HEAD /{repo_id}/resolve/{rev}/{path}               X-Repo-Commit, ETag, Content-Length
- GET  /{repo_id}/resolve/{rev}/{path}               the bytes (a `Range: bytes=N-` is honoured)

Missing repos and files answer 404 with the hub's X-Error-Code (RepoNotFound / EntryNotFound), which
huggingface_hub turns into RepositoryNotFoundError / EntryNotFoundError. Repositories are local folders.
Files are served as regular (non-LFS) files: the hub's LFS redirect and Xet paths are not reproduced.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit


class LoopbackHub:
    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = repos
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                hub.handle(self, body=False)

            def do_GET(self) -> None:
                hub.handle(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackHub:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def commit(repo_id: str) -> str:
        return hashlib.sha1(repo_id.encode()).hexdigest()

    def files(self, repo_id: str) -> dict[str, Path]:
        root = self.repos[repo_id]
        return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}

    def handle(self, request: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(request.path).path)
        self.requests.append(f"{request.command} {path}")
        if path.startswith("/api/models/"):
            repo_id = path[len("/api/models/") :].split("/revision/")[0]
            if repo_id not in self.repos:
                return self.error(request, 404, "RepoNotFound")
            info = {
                "id": repo_id,
                "modelId": repo_id,
                "sha": self.commit(repo_id),
                "private": False,
                "siblings": [
                    {"rfilename": name, "size": file.stat().st_size}
                    for name, file in self.files(repo_id).items()
                ],
            }
            return self.send(
                request, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body
            )
        if "/resolve/" not in path:
            return self.error(request, 404, "RepoNotFound")
        repo_id, rest = path.lstrip("/").split("/resolve/", 1)
        if repo_id not in self.repos:
            return self.error(request, 404, "RepoNotFound")
        _revision, _, filename = rest.partition("/")
        file = self.files(repo_id).get(filename)
        if file is None:
            return self.error(request, 404, "EntryNotFound")
        data = file.read_bytes()
        headers = {
            "X-Repo-Commit": self.commit(repo_id),
            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
            "Content-Type": "application/octet-stream",
        }
        start = 0
        ranged = request.headers.get("Range", "")
        if body and ranged.startswith("bytes="):
            start = int(ranged[len("bytes=") :].split("-")[0] or 0)
        return self.send(request, 206 if start else 200, data[start:], headers, body)

    def error(self, request: BaseHTTPRequestHandler, status: int, code: str) -> None:
        message = json.dumps({"error": code}).encode()
        self.send(request, status, message, {"X-Error-Code": code, "Content-Type": "application/json"}, True)

    @staticmethod
    def send(
        request: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str], body: bool
    ) -> None:
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if body and request.command != "HEAD":
            request.wfile.write(data)
