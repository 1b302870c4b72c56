"""A real HTTP server on 127.0.0.1 serving model files the way the public sources (or a mirror) do.

`add()` serves one file, honouring Range requests, and can misbehave on purpose (cut the
connection mid-file, answer 503) a given number of times. `add_hf_repo()` emulates the part of
the Hugging Face Hub API that hf_hub_download and snapshot_download use: repo info, the file
tree, and HEAD/GET `/<repo>/resolve/<rev>/<file>` with the X-Repo-Commit and ETag headers.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SMALL_PACK = Path(__file__).resolve().parents[3] / "shared" / "models" / "insightface" / "models" / "scrfd500m_mbf"


def pack_zip(*, nested: str | None = None, files: list[Path] | None = None) -> bytes:
    """A zip of the real small pack: files at the top (like buffalo_l.zip) or in one folder (antelopev2.zip)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in files or sorted(SMALL_PACK.glob("*.onnx")):
            bundle.write(path, f"{nested}/{path.name}" if nested else path.name)
    return buffer.getvalue()


@dataclass
class Served:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None  # close the connection after this many body bytes...
    cuts: int = 0  # ...in this many responses
    fail_status: int | None = None  # answer this status instead...
    failures: int = 0  # ...this many times
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, Range header)


class ModelServer:
    def __init__(self) -> None:
        self.files: dict[str, Served] = {}
        handler = type("Handler", (_Handler,), {"model_server": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def add(self, path: str, body: bytes, **behaviour: object) -> Served:
        self.files[path] = Served(body=body, **behaviour)  # type: ignore[arg-type]
        return self.files[path]

    def add_with_sidecar(self, path: str, body: bytes, *, sha256: str | None = None, **behaviour: object) -> Served:
        digest = sha256 or hashlib.sha256(body).hexdigest()
        self.add(f"{path}.sha256", f"{digest}  {path.rsplit('/', 1)[-1]}\n".encode())
        return self.add(path, body, **behaviour)

    def add_hf_repo(self, prefix: str, repo_id: str, files: dict[str, bytes]) -> str:
        """Serve `files` as the model repo `repo_id` under the endpoint `<url><prefix>`; its commit sha."""
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        info = {"id": repo_id, "sha": commit, "siblings": [{"rfilename": name} for name in files]}
        tree = [
            {"type": "file", "path": name, "size": len(body), "oid": hashlib.sha1(body).hexdigest()}
            for name, body in files.items()
        ]
        for revision in ("main", commit):
            self.add(f"{prefix}/api/models/{repo_id}/revision/{revision}", json.dumps(info).encode())
            self.add(f"{prefix}/api/models/{repo_id}/tree/{revision}", json.dumps(tree).encode())
            for name, body in files.items():
                etag = f'"{hashlib.sha256(body).hexdigest()}"'
                self.add(
                    f"{prefix}/{repo_id}/resolve/{revision}/{name}",
                    body,
                    headers={"X-Repo-Commit": commit, "ETag": etag},
                )
        return commit

    def requested(self, path: str) -> list[tuple[str, str]]:
        return self.files[path].requests

    def __enter__(self) -> ModelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    model_server: ModelServer

    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        served = self.model_server.files.get(self.path.split("?", 1)[0])
        if served is None:
            self.send_error(404)
            return
        served.requests.append((self.command, self.headers.get("Range", "")))
        if served.fail_status and served.failures > 0:
            served.failures -= 1
            self.send_error(served.fail_status)
            return
        data, status, extra = served.body, 200, {}
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, extra = 206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
            data = data[start:]
        self.send_response(status)
        for name, value in {**served.headers, **extra, "Content-Length": str(len(data))}.items():
            self.send_header(name, value)
        self.end_headers()
        if not body:
            return
        if served.cut_after is not None and served.cuts > 0:
            served.cuts -= 1
            self.wfile.write(data[: served.cut_after])
            self.wfile.flush()
            self.close_connection = True  # the rest never comes: a broken transfer
            return
        self.wfile.write(data)
