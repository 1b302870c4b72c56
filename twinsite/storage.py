"""Writing and sweeping private files in Django storage (local disk or S3), for every app.

Deletion never raises: a file that can't be deleted is logged and the rest go on, and the
prefix sweep (which lists the storage, so it also finds files no row names any more) gets
another try at it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable

from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.db.models.fields.files import FieldFile

logger = logging.getLogger(__name__)


def store_file(file: FieldFile, content: bytes, *, hint: str, written: list[str]) -> None:
    """Write `content` to storage as `file`, under a name chosen (and listed in `written`) before writing.

    A write that fails halfway (a full disk) leaves part of a file behind; knowing its name up
    front is what lets the caller's cleanup delete it. FieldFile.save picks the name inside.
    """
    name = file.field.generate_filename(file.instance, hint)
    written.append(name)
    file.name = file.storage.save(name, ContentFile(content), max_length=file.field.max_length)
    written[-1] = file.name


def delete_files(storage: Storage, names: Iterable[str]) -> None:
    for name in names:
        try:
            storage.delete(name)
        except Exception:  # keep erasing the rest; the prefix sweep gets another try
            logger.exception("could not delete file", extra={"file": name})


def delete_tree(storage: Storage, prefix: str) -> None:
    """Every file under `prefix`, at any depth, and on local disk the emptied folders too."""
    try:
        directories, files = storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:  # storage unreachable: the names the rows hold were deleted already
        logger.warning("could not list files to sweep", extra={"prefix": prefix, "error": str(exc)[:200]})
        return
    delete_files(storage, [f"{prefix}/{name}" for name in files])
    for directory in directories:
        delete_tree(storage, f"{prefix}/{directory}")
    # Local disk keeps empty folders named after the twin; object stores have none.
    with contextlib.suppress(NotImplementedError, OSError):
        os.rmdir(storage.path(prefix))


def sweep(storage: Storage, names: Iterable[str], prefixes: Iterable[str]) -> None:
    """Delete the files rows name, then whatever else lies under the prefixes."""
    delete_files(storage, names)
    for prefix in prefixes:
        delete_tree(storage, prefix)
