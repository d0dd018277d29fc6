"""Face quality measures from the crop and landmarks: size, sharpness, brightness and pose, combined into 0..1."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edge.recognition.detector import Detection


@dataclass(frozen=True, slots=True)
class QualityLimits:
    """What a face must reach to be recognised (and enrolled). Defaults chosen from the test photos and clips."""

    min_face_px: float = 40.0
    """Shorter box side in pixels; below this MobileFaceNet's accuracy falls away."""
    min_sharpness: float = 60.0
    """Variance of the Laplacian of the aligned 112x112 grey crop."""
    min_brightness: float = 40.0
    max_brightness: float = 220.0
    max_yaw: float = 0.45
    """Nose offset from the eye midline over the eye distance (0 frontal, ~0.5 about 45 degrees)."""
    max_roll_deg: float = 30.0


@dataclass(frozen=True, slots=True)
class FaceQuality:
    """Measures of one face and the combined score."""

    face_px: float
    sharpness: float
    brightness: float
    yaw: float
    roll_deg: float
    score: float

    def problems(self, limits: QualityLimits) -> list[str]:
        """Why this face is not good enough, in words (empty: good enough)."""
        found = []
        if self.face_px < limits.min_face_px:
            found.append(f"too small ({self.face_px:.0f} px, need {limits.min_face_px:.0f})")
        if self.sharpness < limits.min_sharpness:
            found.append(f"too blurred (sharpness {self.sharpness:.0f}, need {limits.min_sharpness:.0f})")
        if self.brightness < limits.min_brightness:
            found.append(f"too dark (brightness {self.brightness:.0f})")
        if self.brightness > limits.max_brightness:
            found.append(f"too bright (brightness {self.brightness:.0f})")
        if abs(self.yaw) > limits.max_yaw:
            found.append(f"turned away (yaw {self.yaw:+.2f})")
        if abs(self.roll_deg) > limits.max_roll_deg:
            found.append(f"head tilted ({self.roll_deg:+.0f} degrees)")
        return found


def pose_from_landmarks(landmarks: npt.NDArray[np.floating]) -> tuple[float, float]:
    """(yaw proxy, roll in degrees) from the 5 ArcFace-ordered landmarks."""
    left_eye, right_eye, nose = landmarks[0], landmarks[1], landmarks[2]
    eye_vector = right_eye - left_eye
    eye_distance = float(np.hypot(*eye_vector)) or 1.0
    roll = math.degrees(math.atan2(float(eye_vector[1]), float(eye_vector[0])))
    midpoint = (left_eye + right_eye) / 2.0
    # Project the nose offset onto the eye line: frontal faces have the nose under the midpoint.
    yaw = float(np.dot(nose - midpoint, eye_vector) / eye_distance) / eye_distance
    return yaw, roll


def measure(detection: Detection, aligned: npt.NDArray[np.uint8]) -> FaceQuality:
    """Quality of one detected face, given its aligned crop."""
    grey = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY)
    # Only the central face region: the corners of an aligned crop hold background and padding.
    centre = grey[16:96, 16:96]
    sharpness = float(cv2.Laplacian(centre, cv2.CV_64F).var())
    brightness = float(centre.mean())
    yaw, roll = pose_from_landmarks(detection.landmarks)
    face_px = min(detection.width, detection.height)
    size_term = min(1.0, face_px / 112.0)
    sharp_term = min(1.0, sharpness / 300.0)
    light_term = 1.0 - min(1.0, abs(brightness - 128.0) / 128.0)
    pose_term = max(0.0, 1.0 - abs(yaw) / 0.6) * max(0.0, 1.0 - abs(roll) / 45.0)
    score = max(0.0, min(1.0, size_term * 0.3 + sharp_term * 0.25 + light_term * 0.15 + pose_term * 0.3))
    return FaceQuality(face_px, sharpness, brightness, yaw, roll, score)
