"""Offline training for Neuroserve: data readers, recipes, ONNX export and model cards.

Nothing in ``service/`` imports this package; it is the only place that needs torch.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
