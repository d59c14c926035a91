"""Neuroserve: ONNX Runtime model server (Open Inference Protocol v2 + task endpoints)."""

__version__ = "0.1.0"
