"""The one way to queue background work.

Tasks are named by dotted path so the web process never imports the worker's
libraries, and queued on commit so no task runs for a row that was rolled back.
"""

from __future__ import annotations

from typing import Literal

from django.db import transaction

Cluster = Literal["default", "gpu"]


def enqueue_on_commit(task_path: str, *args: object, cluster: Cluster = "default", name: str | None = None) -> None:
    def _send() -> None:
        from django_q.tasks import async_task

        options: dict[str, object] = {"cluster": cluster}
        if name:
            options["task_name"] = name
        async_task(task_path, *args, q_options=options)

    transaction.on_commit(_send)
