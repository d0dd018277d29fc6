"""Face detectors: SCRFD through ONNX Runtime and YuNet through OpenCV, both returning boxes with 5 landmarks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from edge.recognition.onnx import create_session

log = logging.getLogger("rollcall.detector")

FloatArray = npt.NDArray[np.float32]
Image = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Detection:
    """One face: box corners (x1, y1, x2, y2) in image pixels, detector score, 5 landmarks (x, y).

    Landmark order is the ArcFace convention in image coordinates: left eye, right eye, nose tip, left mouth
    corner, right mouth corner (left = smaller x).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: FloatArray

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return max(0.0, self.width) * max(0.0, self.height)


class FaceDetector(Protocol):
    """Anything that finds faces in a BGR image."""

    def detect(self, image: Image) -> list[Detection]:
        """Faces in ``image`` (uint8 BGR, HxWx3), best first."""
        ...


def nms(boxes: npt.NDArray[np.floating], scores: npt.NDArray[np.floating], threshold: float) -> list[int]:
    """Greedy non-maximum suppression; indexes of the kept boxes, highest score first."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size > 0:
        best = int(order[0])
        keep.append(best)
        xx1 = np.maximum(x1[best], x1[order[1:]])
        yy1 = np.maximum(y1[best], y1[order[1:]])
        xx2 = np.minimum(x2[best], x2[order[1:]])
        yy2 = np.minimum(y2[best], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        overlap = inter / (areas[best] + areas[order[1:]] - inter)
        order = order[1:][overlap <= threshold]
    return keep


class ScrfdDetector:
    """SCRFD (InsightFace) with keypoints, run by ONNX Runtime.

    The image is scaled so its longer side is ``input_size`` and padded bottom/right to a multiple of 32 (the model
    takes dynamic sizes), which for a 16:9 camera feeds 640x352 instead of 640x640: 45 % fewer pixels.
    """

    STRIDES = (8, 16, 32)
    ANCHORS_PER_CELL = 2

    def __init__(
        self,
        model_path: Path,
        *,
        input_size: int = 640,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        providers: list[str] | None = None,
        threads: int = 1,
    ) -> None:
        if input_size % 32:
            raise ValueError(f"SCRFD input_size must be a multiple of 32, got {input_size}")
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.session = create_session(model_path, providers=providers, threads=threads)
        self.input_name = self.session.get_inputs()[0].name
        self._output_order = self._map_outputs()
        self._anchor_cache: dict[tuple[int, int, int], FloatArray] = {}
        self.calls = 0

    def _map_outputs(self) -> dict[str, list[int]]:
        # Outputs come as 3 scores, 3 boxes, 3 keypoint tensors (strides 8, 16, 32) in every published export;
        # check it from the declared last dimensions rather than trusting names, which differ between exports.
        outputs = self.session.get_outputs()
        if len(outputs) != 9:
            raise ValueError(f"expected an SCRFD model with keypoints (9 outputs), got {len(outputs)}")
        last_dims = [o.shape[-1] for o in outputs]
        if last_dims != [1, 1, 1, 4, 4, 4, 10, 10, 10]:
            raise ValueError(f"unexpected SCRFD output layout {last_dims}")
        return {"scores": [0, 1, 2], "boxes": [3, 4, 5], "kps": [6, 7, 8]}

    def _anchors(self, height: int, width: int, stride: int) -> FloatArray:
        key = (height, width, stride)
        cached = self._anchor_cache.get(key)
        if cached is None:
            ys, xs = np.mgrid[:height, :width]
            grid = np.stack([xs, ys], axis=-1).astype(np.float32)
            centers = (grid * stride).reshape(-1, 2)
            cached = np.repeat(centers, self.ANCHORS_PER_CELL, axis=0)
            self._anchor_cache[key] = cached
        return cached

    def prepare(self, image: Image) -> tuple[FloatArray, float]:
        """Scale, pad and normalise ``image`` into the model's input blob; returns (blob, scale)."""
        height, width = image.shape[:2]
        scale = self.input_size / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR) if scale != 1.0 else image
        pad_w, pad_h = -(-new_w // 32) * 32, -(-new_h // 32) * 32
        canvas = np.zeros((pad_h, pad_w, 3), dtype=np.uint8)
        canvas[:new_h, :new_w] = resized
        blob = cv2.dnn.blobFromImage(canvas, 1.0 / 128.0, (pad_w, pad_h), (127.5, 127.5, 127.5), swapRB=True)
        return blob.astype(np.float32, copy=False), scale

    def detect(self, image: Image) -> list[Detection]:
        """Faces in a BGR image, best score first."""
        self.calls += 1
        blob, scale = self.prepare(image)
        outputs = self.session.run(None, {self.input_name: blob})
        in_h, in_w = blob.shape[2], blob.shape[3]
        all_scores, all_boxes, all_kps = [], [], []
        for level, stride in enumerate(self.STRIDES):
            scores = outputs[self._output_order["scores"][level]].reshape(-1)
            boxes = outputs[self._output_order["boxes"][level]].reshape(-1, 4) * stride
            kps = outputs[self._output_order["kps"][level]].reshape(-1, 10) * stride
            anchors = self._anchors(in_h // stride, in_w // stride, stride)
            keep = np.where(scores >= self.score_threshold)[0]
            if keep.size == 0:
                continue
            centers = anchors[keep]
            b = boxes[keep]
            decoded = np.stack(
                [centers[:, 0] - b[:, 0], centers[:, 1] - b[:, 1], centers[:, 0] + b[:, 2], centers[:, 1] + b[:, 3]],
                axis=1,
            )
            k = kps[keep].reshape(-1, 5, 2) + centers[:, None, :]
            all_scores.append(scores[keep])
            all_boxes.append(decoded)
            all_kps.append(k)
        if not all_scores:
            return []
        scores_np = np.concatenate(all_scores)
        boxes_np = (np.concatenate(all_boxes) / scale).astype(np.float32)
        kps_np = np.concatenate(all_kps) / scale
        keep_idx = nms(boxes_np, scores_np, self.nms_threshold)
        height, width = image.shape[:2]
        found = []
        for i in keep_idx:
            x1, y1, x2, y2 = boxes_np[i]
            box = (
                float(np.clip(x1, 0, width)),
                float(np.clip(y1, 0, height)),
                float(np.clip(x2, 0, width)),
                float(np.clip(y2, 0, height)),
            )
            found.append(Detection(box, float(scores_np[i]), kps_np[i].astype(np.float32)))
        return found


class YunetDetector:
    """YuNet through OpenCV's FaceDetectorYN (decoding and NMS inside OpenCV)."""

    def __init__(
        self,
        model_path: Path,
        *,
        input_size: int = 640,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
    ) -> None:
        if not model_path.is_file():
            raise FileNotFoundError(f"YuNet model not found: {model_path}")
        self.input_size = input_size
        self._detector = cv2.FaceDetectorYN.create(
            str(model_path), "", (input_size, input_size), score_threshold, nms_threshold, top_k
        )
        self.calls = 0

    def detect(self, image: Image) -> list[Detection]:
        """Faces in a BGR image, best score first."""
        self.calls += 1
        height, width = image.shape[:2]
        scale = min(1.0, self.input_size / max(height, width))
        work = cv2.resize(image, (round(width * scale), round(height * scale))) if scale < 1.0 else image
        self._detector.setInputSize((work.shape[1], work.shape[0]))
        _, faces = self._detector.detect(work)
        if faces is None:
            return []
        found = []
        for row in faces:
            x, y, w, h = (float(v) / scale for v in row[:4])
            # YuNet's "right eye" is the subject's right, i.e. the image's left: the ArcFace order already.
            landmarks = (row[4:14].reshape(5, 2) / scale).astype(np.float32)
            found.append(Detection((x, y, x + w, y + h), float(row[14]), landmarks))
        found.sort(key=lambda d: d.score, reverse=True)
        return found
