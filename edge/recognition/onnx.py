"""ONNX Runtime sessions with rollcall's defaults: chosen execution providers, bounded threads, quiet logs."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


class ModelLoadError(RuntimeError):
    """A model file that cannot be loaded, with what to do about it."""


def create_session(model_path: Path, *, providers: list[str] | None = None, threads: int = 1) -> ort.InferenceSession:
    """An inference session on the first available of ``providers`` (CPU when none is available)."""
    if not model_path.is_file():
        raise ModelLoadError(
            f"model file not found: {model_path}. Set ROLLCALL_MODEL_DIR (or models.dir) to the folder holding it, "
            "or run `rollcall models fetch PACK`"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # SCRFD exports declare 640x640 output shapes; other input sizes run fine but warn on every call.
    options.log_severity_level = 3
    available = set(ort.get_available_providers())
    wanted = [p for p in (providers or ["CPUExecutionProvider"]) if p in available] or ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=wanted)
    except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
        raise ModelLoadError(f"cannot load {model_path}: {exc}. Check it with `rollcall models verify`") from exc
