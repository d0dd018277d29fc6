"""Face embeddings from aligned 112x112 crops (MobileFaceNet / ArcFace-family ONNX models), L2-normalised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge.recognition.onnx import create_session


class FaceEmbedder:
    """Runs a recognition model on aligned BGR crops and returns unit-length embeddings."""

    def __init__(
        self,
        model_path: Path,
        *,
        mean: float = 127.5,
        std: float = 127.5,
        rgb: bool = True,
        providers: list[str] | None = None,
        threads: int = 1,
    ) -> None:
        self.session = create_session(model_path, providers=providers, threads=threads)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        batch = model_input.shape[0]
        self._fixed_batch = isinstance(batch, int)  # e.g. MobileFaceNet's export takes exactly one crop per run
        self.embedding_size = int(self.session.get_outputs()[0].shape[-1])
        self.mean, self.std, self.rgb = mean, std, rgb
        self.model_id = model_path.name
        self.calls = 0

    def _blob(self, crops: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        stack = np.stack(crops).astype(np.float32)
        if self.rgb:
            stack = stack[..., ::-1]
        stack = (stack - self.mean) / self.std
        return np.ascontiguousarray(stack.transpose(0, 3, 1, 2), dtype=np.float32)

    def embed(self, crops: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """Unit-length embeddings, one row per aligned crop."""
        if not crops:
            return np.zeros((0, self.embedding_size), dtype=np.float32)
        self.calls += len(crops)
        if self._fixed_batch:
            rows = [self.session.run(None, {self.input_name: self._blob([crop])})[0][0] for crop in crops]
            raw = np.stack(rows)
        else:
            raw = self.session.run(None, {self.input_name: self._blob(crops)})[0]
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return np.asarray(raw / np.maximum(norms, 1e-12), dtype=np.float32)
