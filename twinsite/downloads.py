"""Download one file over HTTP(S): resumable, retried, checksum-verified, atomic.

Pure standard library (urllib), so management commands can use it without any ML import.
The bytes go to `<dest>.part` first; a broken transfer resumes from there with an HTTP Range
request (on this run's next attempt, or on the next run), and `dest` appears only once the
whole file is there and its sha256 matches.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

CHUNK_BYTES = 1 << 20
USER_AGENT = "twinsite-fetch-models/1"
# Statuses worth another attempt; any other HTTP error (404, 403...) will not change by retrying.
_RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

ProgressCallback = Callable[[int, int | None], None]


class DownloadError(Exception):
    """A download that failed for good; the message says why in one line."""


class ChecksumMismatch(DownloadError):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checksum_sidecar(url: str, *, timeout: float = 30.0) -> str | None:
    """The sha256 published next to `url` as `<url>.sha256` (`sha256sum` format), or None if there is none."""
    try:
        with _open(f"{url}.sha256", headers={}, timeout=timeout) as response:
            text = response.read(4096).decode("ascii", "replace")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise DownloadError(f"{url}.sha256: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"cannot reach {url}.sha256: {_reason(exc)}") from exc
    token = (text.split() or [""])[0].lower()
    if not re.fullmatch(r"[0-9a-f]{64}", token):
        raise DownloadError(f"{url}.sha256 does not hold a sha256 (got {text[:80]!r})")
    return token


def download(
    *,
    url: str,
    dest: Path,
    sha256: str,
    retries: int = 4,
    backoff_s: float = 1.0,
    timeout_s: float = 30.0,
    progress: ProgressCallback | None = None,
) -> Path:
    """Fetch `url` into `dest` and return it; DownloadError (or ChecksumMismatch) if that can't be done.

    `retries` more attempts follow a network failure or a retryable status, `backoff_s`
    doubling between them; each attempt resumes where the last one stopped. A wrong checksum
    deletes the partial file and is never retried: the same bytes would come again.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            _transfer(url, part, timeout_s=timeout_s, progress=progress)
            break
        except _Retryable as exc:
            last_error = str(exc)
    else:
        raise DownloadError(f"{url}: {last_error} (gave up after {retries + 1} attempts; run again to resume)")
    actual = sha256_of(part)
    if actual != sha256.lower():
        part.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{url}: sha256 is {actual}, expected {sha256.lower()}; the file was deleted")
    os.replace(part, dest)
    return dest


class _Retryable(Exception):
    pass


def _transfer(url: str, part: Path, *, timeout_s: float, progress: ProgressCallback | None) -> None:
    """One attempt: append to `part` from where it ends. Raises _Retryable or DownloadError."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = _open(url, headers=headers, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # Nothing after `have`: either the part is already whole (the checksum decides) or it is
            # longer than the file now published; start again in that case.
            total = _total_from_content_range(exc.headers.get("Content-Range", ""))
            if total == have:
                return
            part.unlink(missing_ok=True)
            raise _Retryable(f"HTTP 416 for a resume at byte {have}; starting over") from exc
        if exc.code in _RETRY_STATUSES:
            raise _Retryable(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Retryable(f"cannot connect: {_reason(exc)}") from exc

    with response:
        if have and response.status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range", ""))
            if start != have:
                part.unlink(missing_ok=True)
                raise _Retryable(f"the server resumed at byte {start}, not {have}; starting over")
            mode = "ab"
        else:
            # 200: the server ignored the Range header and sends the whole file.
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        with part.open(mode) as handle:
            received = _copy(response, handle, have=have, total=total, progress=progress)
    if total is not None and received < total:
        raise _Retryable(f"connection closed at byte {received} of {total}")


def _copy(response: Any, handle: IO[bytes], *, have: int, total: int | None, progress: ProgressCallback | None) -> int:
    received = have
    if progress:
        progress(received, total)
    try:
        while chunk := response.read(CHUNK_BYTES):
            handle.write(chunk)
            received += len(chunk)
            if progress:
                progress(received, total)
    except (OSError, http.client.HTTPException) as exc:
        handle.flush()
        raise _Retryable(f"transfer broke at byte {received}: {_reason(exc)}") from exc
    return received


def _open(url: str, *, headers: dict[str, str], timeout: float) -> Any:
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"{url}: only http:// and https:// URLs can be downloaded")
    # The scheme is checked above: no file:// or custom schemes.
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})  # noqa: S310
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310


def _parse_content_range(value: str) -> tuple[int, int | None]:
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if not match:
        raise _Retryable(f"unreadable Content-Range {value!r}")
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


def _total_from_content_range(value: str) -> int | None:
    match = re.fullmatch(r"bytes \*/(\d+)", value.strip())
    return int(match.group(1)) if match else None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason


class ProgressReporter:
    """A tqdm bar on a terminal; elsewhere (logs, CI) a plain line every 10 % or 10 s."""

    def __init__(self, *, label: str, stream: Any, interval_s: float = 10.0) -> None:
        self.label = label
        # Django's OutputWrapper adds a newline to every write, which would break tqdm's redraws.
        self.stream = getattr(stream, "_out", stream)
        self.interval_s = interval_s
        self._bar: Any = None
        self._last_line = (0.0, -1)
        isatty = getattr(stream, "isatty", None)
        self.tty = bool(isatty and isatty())

    def __call__(self, done: int, total: int | None) -> None:
        if self.tty:
            self._tqdm(done, total)
            return
        now = time.monotonic()
        tenth = done * 10 // total if total else -1
        last_time, last_tenth = self._last_line
        if tenth != last_tenth or now - last_time >= self.interval_s:
            self._last_line = (now, tenth)
            of = f" of {total / 1e6:.1f} MB ({done * 100 // total} %)" if total else " MB"
            self.stream.write(f"  {self.label}: {done / 1e6:.1f}{of}\n")
            self.stream.flush()

    def _tqdm(self, done: int, total: int | None) -> None:
        if self._bar is None or (total and self._bar.total != total):
            from tqdm import tqdm

            self.close()
            self._bar = tqdm(total=total, unit="B", unit_scale=True, desc=self.label, file=self.stream, leave=True)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
