"""Offline quantization to msModelSlim's AscendV1 layout (`m2serve quantize`)."""
from m2serve.quantize.convert import QuantizeOptions, quantize_checkpoint
from m2serve.quantize.quarot import apply_quarot

__all__ = ["QuantizeOptions", "quantize_checkpoint", "apply_quarot"]
