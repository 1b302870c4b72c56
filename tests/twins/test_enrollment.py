"""Enrollment with the real small InsightFace pack and real photos (../shared)."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from PIL import Image, ImageEnhance

from tests.twins.conftest import photos
from tests.twins.images import upload
from twins import faces, services
from twins.models import EnrollmentFailure, Selfie, SelfieRejection, Twin

pytestmark = pytest.mark.django_db


def _verdicts(twin: Twin) -> dict[str, str]:
    return {
        s.original_name: (s.reason or s.status) for s in Selfie.objects.filter(twin=twin).order_by("created_at", "id")
    }


def test_a_real_person_enrolls_to_ready(twin, lfw, add_photos, enroll):
    add_photos(twin, photos(lfw / "george_w_bush"))  # 20 LFW photos
    result = enroll(twin)

    assert result.status == Twin.Status.READY, twin.status_message
    assert twin.status == Twin.Status.READY
    assert twin.accepted_count >= 18, _verdicts(twin)
    assert twin.accepted_count + twin.rejected_count == twin.photo_count == 20
    assert twin.status_message.startswith(f"Ready: {twin.accepted_count} of 20 photos accepted")
    assert twin.enrolled_at is not None
    assert (twin.progress_done, twin.progress_total) == (20, 20)
    assert twin.enrollment_attempts == 1

    info = faces.model_info()
    assert (twin.embedding_model, twin.embedding_dim) == ("scrfd500m_mbf", info.dim) == ("scrfd500m_mbf", 128)
    identity = faces.embedding_from_bytes(twin.embedding, twin.embedding_dim)
    assert abs(float(np.linalg.norm(identity)) - 1.0) < 1e-4

    with twin.reference_face.open("rb") as fh, Image.open(fh) as reference:
        assert (reference.format, reference.size) == ("PNG", (224, 224))  # FaceID Plus v2's norm_crop size
    assert twin.reference_face.name.startswith(f"twins/{twin.storage_key}/reference/")

    accepted = Selfie.objects.filter(twin=twin, status=Selfie.Status.ACCEPTED)
    for selfie in accepted:
        assert selfie.reason == "" and selfie.message == ""
        assert selfie.face_count >= 1 and len(selfie.face_box) == 4 and selfie.detector_score > 0.5
        assert selfie.sharpness > 40 and 40 < selfie.brightness < 220
        assert abs(selfie.yaw) <= 45 and abs(selfie.pitch) <= 35
        assert selfie.similarity >= 0.35
        assert len(selfie.embedding) == 128 * 4
        assert selfie.analyzed_at is not None
    summary = twin.quality_summary
    assert summary["accepted"] == twin.accepted_count and summary["dim"] == 128
    assert summary["similarity_min"] >= 0.35


def test_another_persons_photos_are_refused_as_different_person(twin, lfw, add_photos, enroll, settings):
    settings.TWIN_MIN_PHOTOS = 10
    add_photos(twin, photos(lfw / "george_w_bush", 14) + photos(lfw / "tony_blair", 4))
    enroll(twin)

    verdicts = _verdicts(twin)
    assert twin.status == Twin.Status.READY
    blair = {name: verdict for name, verdict in verdicts.items() if name.startswith("tony_blair")}
    assert set(blair.values()) == {SelfieRejection.DIFFERENT_PERSON}, verdicts
    bush = [v for name, v in verdicts.items() if name.startswith("george_w_bush")]
    assert bush.count(Selfie.Status.ACCEPTED) == 14
    message = Selfie.objects.filter(twin=twin, reason=SelfieRejection.DIFFERENT_PERSON).first().message
    assert "different person" in message


def test_hard_photos_get_the_right_reasons(twin, lfw, add_photos, enroll, settings):
    settings.TWIN_MIN_PHOTOS = 5
    hard = lfw / "_hard"
    add_photos(twin, photos(lfw / "george_w_bush", 6))
    add_photos(
        twin,
        [
            hard / "group_couple.jpg",
            hard / "group_two_people.jpg",
            hard / "group_obama_and_biden.jpg",
            hard / "group_selfie_many_people.jpg",
            hard / "noface_cat_chelsea.png",
            hard / "noface_coffee.png",
            hard / "noface_pilatus800.jpg",
            hard / "noface_rocket.jpg",
            hard / "blurry_derived_bush001_gauss6.jpg",
            hard / "lowres_derived_bush001_40px.jpg",
            hard / "small_obama_240p.jpg",
        ],
    )
    enroll(twin)

    verdicts = _verdicts(twin)
    expected = {
        "_hard_group_couple.jpg": SelfieRejection.MULTIPLE_FACES,
        "_hard_group_two_people.jpg": SelfieRejection.MULTIPLE_FACES,
        "_hard_group_obama_and_biden.jpg": SelfieRejection.MULTIPLE_FACES,
        "_hard_group_selfie_many_people.jpg": SelfieRejection.MULTIPLE_FACES,
        "_hard_noface_cat_chelsea.png": SelfieRejection.NO_FACE,
        "_hard_noface_coffee.png": SelfieRejection.NO_FACE,
        "_hard_noface_pilatus800.jpg": SelfieRejection.NO_FACE,
        "_hard_noface_rocket.jpg": SelfieRejection.NO_FACE,
        "_hard_blurry_derived_bush001_gauss6.jpg": SelfieRejection.BLURRY,
        "_hard_lowres_derived_bush001_40px.jpg": SelfieRejection.BLURRY,
        "_hard_small_obama_240p.jpg": SelfieRejection.FACE_TOO_SMALL,
    }
    assert {name: verdicts[name] for name in expected} == expected
    assert twin.status == Twin.Status.READY  # the six real photos are enough at TWIN_MIN_PHOTOS=5
    no_face = Selfie.objects.get(twin=twin, original_name="_hard_noface_rocket.jpg")
    assert no_face.face_count == 0 and no_face.embedding is None and "No face" in no_face.message
    group = Selfie.objects.get(twin=twin, original_name="_hard_group_selfie_many_people.jpg")
    assert group.face_count == 6
    small = Selfie.objects.get(twin=twin, original_name="_hard_small_obama_240p.jpg")
    assert "pixels across" in small.message


def test_tiny_image_is_refused_at_intake(twin, lfw):
    path = lfw / "_hard" / "tiny_derived_bush001_28px.jpg"
    with pytest.raises(services.SelfiesRefused) as caught:
        services.add_selfies(twin=twin, uploads=[upload(path.name, path.read_bytes())])
    assert caught.value.code == "too_small"


def _variant(path, *, brightness: float | None = None, quality: int = 90) -> bytes:
    image = Image.open(path).convert("RGB")
    if brightness is not None:
        image = ImageEnhance.Brightness(image).enhance(brightness)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def test_light_and_duplicates_are_judged(twin, lfw, add_photos, enroll, settings):
    settings.TWIN_MIN_PHOTOS = 3
    bush = photos(lfw / "george_w_bush")
    add_photos(twin, bush[:4])
    services.add_selfies(
        twin=twin,
        uploads=[
            upload("dark.jpg", _variant(bush[5], brightness=0.22)),
            upload("bright.jpg", _variant(bush[6], brightness=2.6)),
            # A re-encode of an accepted photo: different bytes (so intake takes it), same picture.
            upload("reencoded.jpg", _variant(bush[1], quality=70)),
        ],
    )
    enroll(twin)

    verdicts = _verdicts(twin)
    assert verdicts["dark.jpg"] == SelfieRejection.TOO_DARK
    assert verdicts["bright.jpg"] == SelfieRejection.TOO_BRIGHT
    assert verdicts["reencoded.jpg"] == SelfieRejection.DUPLICATE
    duplicate = Selfie.objects.get(twin=twin, original_name="reencoded.jpg")
    assert "george_w_bush_002.jpg" in duplicate.message


def test_too_few_good_photos_fail_with_what_to_fix(twin, lfw, add_photos, enroll):
    add_photos(twin, [*photos(lfw / "george_w_bush", 8), lfw / "_hard" / "noface_coffee.png"])
    result = enroll(twin)

    assert result.status == twin.status == Twin.Status.FAILED
    assert twin.embedding is None and not twin.reference_face and twin.embedding_dim is None
    assert "Only 8 of 9 photos passed the checks; at least 15 are needed" in twin.status_message
    assert "1 no face found" in twin.status_message
    assert "Add at least 7 more" in twin.status_message


def test_re_enrolling_after_adding_photos_re_analyses_all(twin, lfw, add_photos, enroll):
    bush = photos(lfw / "george_w_bush")
    add_photos(twin, bush[:10])
    assert enroll(twin).status == Twin.Status.FAILED

    add_photos(twin, bush[10:])
    pending = Selfie.objects.filter(twin=twin, status=Selfie.Status.PENDING).count()
    assert pending == 10
    result = enroll(twin)

    assert result.status == Twin.Status.READY
    assert not Selfie.objects.filter(twin=twin, status=Selfie.Status.PENDING).exists()
    assert twin.progress_done == twin.progress_total == 20
    assert twin.enrollment_attempts == 1  # a new start resets the counter


def test_re_enrolling_a_ready_twin_replaces_its_reference_face(
    twin, lfw, add_photos, enroll, settings, media_root, django_capture_on_commit_callbacks
):
    settings.TWIN_MIN_PHOTOS = 5
    add_photos(twin, photos(lfw / "george_w_bush", 8))
    enroll(twin)
    first_reference = twin.reference_face.name
    with django_capture_on_commit_callbacks(execute=True):
        enroll(twin)
    assert twin.status == Twin.Status.READY
    assert twin.reference_face.name != first_reference
    assert not (media_root / first_reference).exists()  # the old crop is deleted after commit
    assert (media_root / twin.reference_face.name).exists()


def test_progress_is_reported_while_it_runs(twin, lfw, add_photos):
    add_photos(twin, photos(lfw / "george_w_bush", 5))
    services.start_enrollment(twin=twin, enqueue=False)
    seen = []

    def on_progress(done: int, total: int) -> None:
        row = Twin.objects.get(pk=twin.pk)
        seen.append((done, total, row.progress_done, row.progress_total, row.status))

    services.enroll_twin(twin=twin, on_progress=on_progress)
    assert seen == [(i, 5, i, 5, Twin.Status.ENROLLING) for i in range(1, 6)]


def test_a_task_delivered_again_after_too_many_starts_fails_clearly(twin, lfw, add_photos, settings):
    add_photos(twin, photos(lfw / "george_w_bush", 3))
    services.start_enrollment(twin=twin, enqueue=False)
    # Three earlier deliveries started and died (say, the worker ran out of memory each time), the
    # last one long enough ago that its heartbeat is stale.
    Twin.objects.filter(pk=twin.pk).update(
        enrollment_attempts=settings.TWIN_MAX_ENROLLMENT_ATTEMPTS, updated_at=timezone.now() - timedelta(hours=1)
    )

    result = services.enroll_twin(twin=twin)
    twin.refresh_from_db()
    assert result.status == twin.status == Twin.Status.FAILED
    assert "interrupted 3 times" in twin.status_message
    assert not Selfie.objects.filter(twin=twin).exclude(status=Selfie.Status.PENDING).exists()


def test_enrollment_only_runs_for_an_enrolling_twin(twin, lfw, add_photos):
    add_photos(twin, photos(lfw / "george_w_bush", 3))
    result = services.enroll_twin(twin=twin)  # never started: a stray or late delivery
    twin.refresh_from_db()
    assert not result.ran and result.status == Twin.Status.DRAFT
    assert twin.enrollment_attempts == 0 and twin.status == Twin.Status.DRAFT


def test_missing_models_fail_the_twin_with_a_clear_message(twin, lfw, add_photos, settings, tmp_path):
    add_photos(twin, photos(lfw / "george_w_bush", 3))
    settings.INSIGHTFACE_ROOT = tmp_path / "nowhere"
    services.start_enrollment(twin=twin, enqueue=False)
    result = services.enroll_twin(twin=twin)
    twin.refresh_from_db()
    assert result.status == twin.status == Twin.Status.FAILED
    assert twin.status_message.startswith("Photos can't be checked right now: the face models are not installed")
    assert "staff can see this too" in twin.status_message
    assert str(tmp_path) not in twin.status_message  # where the models were looked for is the operator's business
    assert twin.failure == EnrollmentFailure.MODELS_UNAVAILABLE
    # The next step says what happened: no photo was refused, so "remove the refused photos" would mislead.
    next_step = services.enrollment_next_step(twin, stalled=False, pending=3)
    assert "refused" not in next_step and "Nothing is wrong with your photos" in next_step


def test_same_person_scores_far_above_different_people(lfw, capsys):
    """The measured cosines between photos of one person and of different people (reported)."""

    def embeddings(folder: str, count: int) -> np.ndarray:
        rows = []
        for path in photos(lfw / folder, count):
            analysis = faces.analyze_photo(Image.open(path).convert("RGB"))
            rows.append(analysis.embedding)
        return np.stack(rows)

    bush, blair, powell = embeddings("george_w_bush", 12), embeddings("tony_blair", 12), embeddings("colin_powell", 12)
    same = np.concatenate([(group @ group.T)[np.triu_indices(len(group), 1)] for group in (bush, blair, powell)])
    different = np.concatenate([(bush @ blair.T).ravel(), (bush @ powell.T).ravel(), (blair @ powell.T).ravel()])
    centre, to_centre = services.robust_centre(bush, threshold=0.35)
    others_to_centre = np.concatenate([blair @ centre, powell @ centre])
    with capsys.disabled():
        print(
            f"\n[cosine] same person pairs: n={same.size} mean={same.mean():.3f} min={same.min():.3f} | "
            f"different people: n={different.size} mean={different.mean():.3f} max={different.max():.3f} | "
            f"to Bush's centre: own min={to_centre.min():.3f}, others max={others_to_centre.max():.3f}"
        )
    assert same.mean() > 0.6 and different.mean() < 0.1
    assert to_centre.min() > 0.6 > 0.35 > others_to_centre.max()


def test_judge_photo_refuses_extreme_pose():
    face = faces.DetectedFace(box=(10, 10, 210, 250), score=0.9, landmarks=np.zeros((5, 2)))
    analysis = faces.PhotoAnalysis(
        width=400,
        height=400,
        faces=(face,),
        sharpness=200,
        brightness=120,
        yaw=62.0,
        pitch=4.0,
        embedding=np.ones(4, dtype=np.float32) / 2,
    )
    verdict = services.judge_photo(analysis)
    assert verdict.reason == SelfieRejection.EXTREME_POSE
    assert "62°" in verdict.message


def test_real_photos_are_within_the_pose_limits(lfw):
    for path in photos(lfw / "george_w_bush") + photos(lfw / "colin_powell"):
        analysis = faces.analyze_photo(Image.open(path).convert("RGB"))
        assert abs(analysis.yaw) < 45 and abs(analysis.pitch) < 35, (path.name, analysis.yaw, analysis.pitch)


def test_a_lost_enrollment_can_be_started_again(twin, lfw, add_photos):
    from datetime import timedelta

    from django.utils import timezone

    from twinsite.errors import Conflict

    add_photos(twin, photos(lfw / "george_w_bush", 2))
    services.start_enrollment(twin=twin, enqueue=False)
    twin.refresh_from_db()
    with pytest.raises(Conflict):  # running (recent heartbeat): no second start
        services.start_enrollment(twin=twin, enqueue=False)
    assert not services.enrollment_stalled(twin)

    # The task was lost (say, the queue was flushed): no heartbeat for longer than a re-delivery takes.
    silence = timedelta(seconds=services.enrollment_stall_seconds() + 1)
    Twin.objects.filter(pk=twin.pk).update(updated_at=timezone.now() - silence, enrollment_attempts=2)
    twin.refresh_from_db()
    assert services.enrollment_stalled(twin)
    services.start_enrollment(twin=twin, enqueue=False)
    twin.refresh_from_db()
    assert twin.status == Twin.Status.ENROLLING and twin.enrollment_attempts == 0
    assert not services.enrollment_stalled(twin)
