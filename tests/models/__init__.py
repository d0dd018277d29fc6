"""Recognition tests: real ONNX models on real photos and clips (marker ``models``)."""
