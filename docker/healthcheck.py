"""Container health checks (the images' HEALTHCHECK). Exit 0 when healthy, 1 when not.

  python docker/healthcheck.py web [URL]   GET /health on the local gunicorn (default http://127.0.0.1:8000/health)
  python docker/healthcheck.py worker      this host's qcluster is registered and running (django-q2's cluster stats)

The web check asks as one of ALLOWED_HOSTS and as if through the TLS proxy, so it passes with the
production switches on (DisallowedHost and the SSL redirect would otherwise answer 400/301).
"""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.error
import urllib.request


def check_web(url: str) -> bool:
    hosts = [h.strip().lstrip(".") for h in os.environ.get("ALLOWED_HOSTS", "").split(",")]
    host = next((h for h in hosts if h and h != "*"), "localhost")
    if not url.startswith(("http://", "https://")):
        raise SystemExit(f"not an http URL: {url}")
    request = urllib.request.Request(url, headers={"Host": host, "X-Forwarded-Proto": "https"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - checked above
            return response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return False


def check_worker() -> bool:
    # A hung or dead cluster stops refreshing its stats (they expire within seconds), so this sees it.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "twinsite.settings")
    import django

    django.setup()
    from django_q.conf import Conf
    from django_q.status import Stat

    host = socket.gethostname()
    # Stats are refreshed every few seconds and expire soon after; on a busy host one refresh can
    # come late, so a worker counts as gone only after a grace period without any.
    deadline = time.monotonic() + float(os.environ.get("HEALTHCHECK_WORKER_GRACE_S", "10"))
    while True:
        running = [s for s in Stat.get_all() if s.host == host and s.status in (Conf.IDLE, Conf.WORKING)]
        if running or time.monotonic() >= deadline:
            break
        time.sleep(1)
    for stat in running:
        print(f"healthy: qcluster pid {stat.pid} on {host}: {stat.status}, {len(stat.workers)} worker(s)")
    if not running:
        print(f"unhealthy: no running qcluster registered for {host}", file=sys.stderr)
    return bool(running)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "web":
        return 0 if check_web(argv[2] if len(argv) > 2 else "http://127.0.0.1:8000/health") else 1
    if len(argv) == 2 and argv[1] == "worker":
        return 0 if check_worker() else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
