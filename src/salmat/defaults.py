"""Default values that more than one module needs, each written once.

A leaf module (no imports at all): the option spec (`salmat.options`), the
reducers (`salmat.temporal`) and the engines import these, and importing it
costs nothing, so `salmat --help` stays light.
"""

from __future__ import annotations

DEFAULT_EMA_ALPHA = 0.6             # `--ema-alpha`, and the value a reducer uses when none is given
DEFAULT_MAX_PIXELS = 8192 * 8192    # `--max-pixels`: larger frames are refused before decoding
MIN_PANEL_WIDTH = 16                # `salmat preview --panel-width`: narrower panels can't hold their labels
DEFAULT_PANEL_WIDTH = 150           # `salmat preview --panel-width`: 8 frames (materialize's sample) in ~1300 px
# Seconds one clip may take (decode + model) before its worker is stopped: far above a
# built-in model on a 4K clip (~0.5 s) or a large ONNX model at 8192² on a CPU (tens of
# seconds), yet finite, so no source or decoder can hang a run forever.
DEFAULT_CLIP_TIMEOUT = 600.0
# `--inference-size S`: the short sides an ONNX model may be run at (below 16 no U-Net level is left).
MIN_INFERENCE_SIZE, MAX_INFERENCE_SIZE = 16, 8192
# The pictures salmat writes (preview sheets, plots): suffix → Pillow format.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
# `--device`: where ONNX models run (the option's choices and the ONNX loader's check).
DEVICES = ("auto", "cpu", "cuda")
