"""Detection, alignment, embeddings and evaluation on the real models and photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.recognition.align import ARCFACE_TEMPLATE, align_face, similarity_transform
from edge.recognition.detector import ScrfdDetector, YunetDetector
from edge.recognition.evaluate import evaluate
from edge.recognition.faces import FaceEngine, PhotoResult
from edge.recognition.gallery import MatchPolicy
from edge.recognition.quality import QualityLimits

GROUPS = {
    "face_recognition_two_people.jpg": 2,
    "face_recognition_obama_and_biden.jpg": 3,
    "deepface_couple.jpg": 2,
    "insightface_t1.jpg": 6,
    "facenet-pytorch_multiface.jpg": 6,
}


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read {path.name}"
    return np.asarray(image, dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(GROUPS))
@pytest.mark.parametrize("model", ["det_500m.onnx", "det_2.5g.onnx", "yunet"])
def test_detectors_find_every_face_in_group_photos(model: str, name: str, model_dir: Path, faces_dir: Path) -> None:
    detector = (
        YunetDetector(model_dir / "face_detection_yunet_2023mar.onnx")
        if model == "yunet"
        else ScrfdDetector(model_dir / model)
    )
    faces = detector.detect(_read(faces_dir / "_groups" / name))
    assert len(faces) == GROUPS[name]
    for face in faces:
        left_eye, right_eye, nose = face.landmarks[0], face.landmarks[1], face.landmarks[2]
        assert left_eye[0] < right_eye[0], "landmarks must be in ArcFace order (left eye first)"
        x1, y1, x2, y2 = face.box
        assert x1 <= nose[0] <= x2 and y1 <= nose[1] <= y2


def test_detector_finds_nothing_in_an_empty_picture(engine: FaceEngine) -> None:
    rng = np.random.default_rng(0)
    wall = np.clip(rng.normal(120, 4, (720, 1280, 3)), 0, 255).astype(np.uint8)
    assert engine.detector.detect(wall) == []


def test_alignment_puts_landmarks_on_the_template(engine: FaceEngine, faces_dir: Path) -> None:
    image = _read(faces_dir / "Barack_Obama" / "obama.jpg")
    face = max(engine.detector.detect(image), key=lambda d: d.area)
    matrix = similarity_transform(face.landmarks, ARCFACE_TEMPLATE)
    mapped = np.hstack([face.landmarks, np.ones((5, 1))]) @ matrix.T
    assert np.abs(mapped - ARCFACE_TEMPLATE).max() < 8.0  # pixels in the 112x112 crop
    aligned = align_face(image, face.landmarks)
    assert aligned.shape == (112, 112, 3)
    # Detecting again on the aligned crop (padded) finds the face where the template says.
    padded = np.asarray(cv2.copyMakeBorder(aligned, 56, 56, 56, 56, cv2.BORDER_CONSTANT, value=(0, 0, 0)), np.uint8)
    again = max(engine.detector.detect(padded), key=lambda d: d.area)
    assert np.abs(again.landmarks - 56 - ARCFACE_TEMPLATE).max() < 10.0


def test_similarity_transform_recovers_a_known_transform() -> None:
    angle, scale, shift = np.deg2rad(17.0), 1.7, np.array([12.0, -5.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = ARCFACE_TEMPLATE * 2.3 + 40
    target = source @ rotation.T + shift
    matrix = similarity_transform(source, target)
    assert np.allclose(matrix[:, :2], rotation, atol=1e-9)
    assert np.allclose(matrix[:, 2], shift, atol=1e-7)


def test_embeddings_are_unit_length_and_separate_people(enrolled: list[PhotoResult]) -> None:
    by_person: dict[str, list[np.ndarray]] = {}
    for result in enrolled:
        assert result.embedding is not None, f"{result.path.name}: {result.reason}"
        assert abs(float(np.linalg.norm(result.embedding)) - 1.0) < 1e-4
        by_person.setdefault(result.person_id, []).append(result.embedding)
    obama, biden = by_person["Barack_Obama"], by_person["Joe_Biden"]
    same = float(obama[0] @ obama[1])
    different = float(obama[0] @ biden[0])
    assert same > 0.5 > different


def test_strict_enrolment_gives_reasons(engine: FaceEngine, faces_dir: Path, tmp_path: Path) -> None:
    group = engine.enrol_photo(faces_dir / "_groups" / "insightface_t1.jpg", "x", strict=True)
    assert not group.ok and group.reason is not None and "faces" in group.reason
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((300, 300, 3), 128, np.uint8))
    assert engine.enrol_photo(blank, "x").reason == "no face found"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    assert engine.enrol_photo(broken, "x").reason == "cannot read the image file"
    portrait = _read(faces_dir / "Barack_Obama" / "obama.jpg")
    tiny = tmp_path / "tiny.jpg"
    cv2.imwrite(str(tiny), cv2.resize(portrait, (portrait.shape[1] // 12, portrait.shape[0] // 12)))
    small = engine.enrol_photo(tiny, "x")
    assert not small.ok and small.reason is not None and "too small" in small.reason
    blurred = tmp_path / "blurred.jpg"
    cv2.imwrite(str(blurred), cv2.GaussianBlur(portrait, (0, 0), 9))
    soft = engine.enrol_photo(blurred, "x")
    assert not soft.ok and soft.reason is not None and "blurred" in soft.reason
    assert engine.enrol_photo(faces_dir / "Barack_Obama" / "obama.jpg", "x").ok


def test_quality_limits_name_each_problem() -> None:
    from edge.recognition.quality import FaceQuality

    poor = FaceQuality(face_px=20, sharpness=5, brightness=20, yaw=0.8, roll_deg=50, score=0.1)
    problems = " ".join(poor.problems(QualityLimits()))
    for word in ("too small", "too blurred", "too dark", "turned away", "tilted"):
        assert word in problems
    good = FaceQuality(face_px=120, sharpness=400, brightness=120, yaw=0.05, roll_deg=3, score=0.9)
    assert good.problems(QualityLimits()) == []


def test_evaluation_reaches_the_figures_on_the_real_photos(enrolled: list[PhotoResult]) -> None:
    report = evaluate(enrolled, MatchPolicy())
    figures = report.as_json()
    assert figures["identities"] >= 30 and figures["photos"] >= 100
    assert figures["rank1"] >= 0.96
    assert figures["tar_at_far_1e-3"] >= 0.90
    assert figures["stranger_reject_rate"] >= 0.95
    assert report.genuine_pairs > 0 and report.impostor_pairs > report.genuine_pairs


def test_evaluation_notices_a_broken_model(enrolled: list[PhotoResult]) -> None:
    # Scramble the embeddings (as a wrong normalisation or colour order would): the figures must collapse.
    rng = np.random.default_rng(1)
    scrambled = [
        PhotoResult(r.path, r.person_id, rng.normal(size=128).astype(np.float32) / 11.3, None) for r in enrolled
    ]
    assert evaluate(scrambled, MatchPolicy()).rank1 < 0.5
