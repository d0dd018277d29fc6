"""Frame sources of the door device: picamera2, an OpenCV camera index, an RTSP/HTTP stream, a video file, images."""

from edge.door.sources.base import CaptureBackend, Clock, Frame, FrameSource, Image, SourceError, utc_now
from edge.door.sources.device import OpenCVDeviceSource
from edge.door.sources.factory import ACCEPTED_FORMS, open_source
from edge.door.sources.image_folder import IMAGE_SUFFIXES, ImageFolderSource
from edge.door.sources.picamera import Picamera2Source
from edge.door.sources.stream import STREAM_SCHEMES, StreamSource, redact_url
from edge.door.sources.video_file import DEFAULT_FILE_FPS, VideoFileSource

__all__ = [
    "ACCEPTED_FORMS",
    "DEFAULT_FILE_FPS",
    "IMAGE_SUFFIXES",
    "STREAM_SCHEMES",
    "CaptureBackend",
    "Clock",
    "Frame",
    "FrameSource",
    "Image",
    "ImageFolderSource",
    "OpenCVDeviceSource",
    "Picamera2Source",
    "SourceError",
    "StreamSource",
    "VideoFileSource",
    "open_source",
    "redact_url",
    "utc_now",
]
