"""The face adapter on its own: pose geometry, model loading and caching, providers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.twins.conftest import photos
from twins import faces


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.radians([yaw, pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _landmarks_of(yaw: float, pitch: float, roll: float, *, distance: float = 900.0) -> np.ndarray:
    """Where a camera 0.9 m away sees the model's landmarks for a head in this pose (image y down)."""
    points = faces._FACE_MODEL_3D @ _rotation(yaw, pitch, roll).T
    projected = points[:, :2] * distance / (distance - points[:, 2:3])
    return np.column_stack([320 + 2 * projected[:, 0], 240 - 2 * projected[:, 1]])


@pytest.mark.parametrize("pose", [(0, 0, 0), (30, 0, 0), (-60, 0, 0), (0, 25, 0), (0, -30, 10), (20, -15, -25)])
def test_pose_from_five_landmarks(pose):
    yaw, pitch, roll = faces.estimate_pose(_landmarks_of(*pose))
    assert yaw == pytest.approx(pose[0], abs=2.5)
    assert pitch == pytest.approx(pose[1], abs=2.5)
    assert roll == pytest.approx(pose[2], abs=2.5)


def test_models_load_once_and_report_their_own_dimension(face_models):
    first = faces._load()
    info = faces.model_info()
    assert faces._load() is first  # cached per process
    assert info.dim == 128  # the test pack's recognizer; read from the model, not assumed
    assert info.pack == "scrfd500m_mbf"
    assert info.providers[-1] == "CPUExecutionProvider"
    assert faces.warm_up() == info


def test_cuda_is_used_when_onnxruntime_offers_it(monkeypatch):
    import onnxruntime

    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: both)
    assert faces._providers() == (["CUDAExecutionProvider", "CPUExecutionProvider"], 0)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert faces._providers() == (["CPUExecutionProvider"], -1)


def test_a_missing_pack_is_a_clear_error_not_a_download(settings, tmp_path):
    settings.INSIGHTFACE_ROOT = tmp_path
    settings.INSIGHTFACE_PACK = "buffalo_l"
    with pytest.raises(faces.FaceModelUnavailable, match=r"no \.onnx files in .*buffalo_l"):
        faces.model_info()


def test_analysis_of_a_real_photo(face_models, faces_dir):
    image = Image.open(photos(faces_dir / "george_w_bush", 1)[0]).convert("RGB")
    analysis = faces.analyze_photo(image)
    assert (analysis.width, analysis.height) == (250, 250)
    assert len(analysis.faces) == 1 and 80 < analysis.face.size < 140
    assert analysis.embedding.dtype == np.float32 and analysis.embedding.shape == (128,)
    assert float(np.linalg.norm(analysis.embedding)) == pytest.approx(1.0, abs=1e-5)

    crop = faces.reference_crop(image, analysis.face)
    assert crop.size == (224, 224) and crop.mode == "RGB"


@pytest.mark.parametrize("photo", ["george_w_bush/001.jpg", "barack_obama/003.jpg"])
def test_the_reference_face_is_insightfaces_norm_crop_pixel_for_pixel(face_models, faces_dir, photo):
    """FaceID Plus v2's recipe: face_align.norm_crop(image, landmark=faces[0].kps, image_size=224).
    The second photo is 1434x2333, analysed downscaled: the crop is cut from the full-size photo."""
    import cv2
    from insightface.utils import face_align

    image = Image.open(faces_dir / photo).convert("RGB")
    face = faces.analyze_photo(image).face
    ours = np.asarray(faces.reference_crop(image, face))
    rgb = np.asarray(image)
    assert np.array_equal(ours, face_align.norm_crop(rgb, landmark=face.landmarks, image_size=224))
    # The demo passes cv2's BGR photo: the same warp, channels swapped.
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    assert np.array_equal(ours, face_align.norm_crop(bgr, landmark=face.landmarks, image_size=224)[:, :, ::-1])


def test_large_photos_are_analysed_downscaled_but_reported_in_original_pixels(face_models, faces_dir):
    image = Image.open(faces_dir / "barack_obama" / "003.jpg").convert("RGB")  # 1434x2333
    analysis = faces.analyze_photo(image)
    x1, y1, x2, y2 = analysis.face.box
    assert 0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height
    assert analysis.face.size > 200  # original pixels: at the 1600 px analysis scale it is about 180


def test_embedding_bytes_round_trip():
    vector = faces.normalize(np.arange(1, 129, dtype=np.float32))
    data = faces.embedding_to_bytes(vector)
    assert len(data) == 128 * 4
    assert np.array_equal(faces.embedding_from_bytes(data, 128), vector)
    with pytest.raises(ValueError, match="expected 512"):
        faces.embedding_from_bytes(data, 512)
