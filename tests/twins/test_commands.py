"""`manage.py enroll_folder`: upload a folder and enroll it in-process, printing every verdict."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from twins.models import Selfie, Twin


def test_enroll_folder_makes_a_ready_twin_and_prints_verdicts(alice, lfw, tmp_path):
    folder = tmp_path / "selfies"
    folder.mkdir()
    for path in sorted((lfw / "george_w_bush").glob("*.jpg")):
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "notes.txt").write_text("ignored: not a photo name")
    (folder / "fake.jpg").write_bytes(b"not an image")
    out = io.StringIO()

    call_command("enroll_folder", "alice", "Bush", str(folder), "--no-progress", stdout=out)

    text = out.getvalue()
    twin = Twin.objects.get(owner=alice, name="Bush")
    assert twin.status == Twin.Status.READY
    assert "refused  fake.jpg: This is not a supported image" in text
    assert f"Twin {twin.pk} is ready" in text
    assert text.count("accepted") >= twin.accepted_count >= 18
    assert Selfie.objects.filter(twin=twin).count() == 20

    # Running it again reuses the twin: every photo is already there.
    again = io.StringIO()
    call_command("enroll_folder", "alice", "Bush", str(folder), "--no-progress", stdout=again)
    assert "Adding to twin" in again.getvalue() and "already part of this twin" in again.getvalue()
    assert Twin.objects.filter(owner=alice, name="Bush").count() == 1


def test_enroll_folder_fails_loudly(alice, lfw, tmp_path):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("enroll_folder", "nobody", "X", str(tmp_path))
    with pytest.raises(CommandError, match="No photos"):
        call_command("enroll_folder", "alice", "X", str(tmp_path))
    (tmp_path / "a.jpg").write_bytes((lfw / "george_w_bush" / "001.jpg").read_bytes())
    with pytest.raises(CommandError, match="did not produce a ready twin"):
        call_command("enroll_folder", "alice", "X", str(tmp_path), "--no-progress", stdout=io.StringIO())
