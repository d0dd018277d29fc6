"""Five-point face alignment to the 112x112 ArcFace template (least-squares similarity transform, Umeyama)."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
"""Where the eyes, nose tip and mouth corners sit in a 112x112 ArcFace crop."""

ALIGNED_SIZE = 112


def similarity_transform(source: npt.NDArray[np.floating], target: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """The 2x3 rotation+uniform scale+translation that maps ``source`` points onto ``target`` in least squares."""
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    reflection = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        reflection[1, 1] = -1.0
    rotation = u @ reflection @ vt
    variance = (src_c**2).sum() / len(src)
    scale = float((singular * np.diag(reflection)).sum() / variance) if variance > 0 else 1.0
    matrix = np.zeros((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align_face(image: npt.NDArray[np.uint8], landmarks: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """The 112x112 BGR crop of the face whose 5 landmarks are given, aligned to the ArcFace template."""
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE)
    aligned = cv2.warpAffine(image, matrix, (ALIGNED_SIZE, ALIGNED_SIZE), borderValue=(0, 0, 0))
    return np.asarray(aligned, dtype=np.uint8)
