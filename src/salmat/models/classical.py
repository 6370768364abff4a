"""Training-free built-in saliency models.

Every model here works on a small copy of the frame and upsamples its map back:

1. **Downscale first.** The Y', Cb and Cr planes are each box-averaged
   (`cv2.INTER_AREA`, in float32) straight to the working size *before* any
   colour conversion, so a 1080p frame costs one cheap resize per plane instead
   of a full-resolution RGB/Lab conversion. For speed at non-integer ratios the
   averaging runs as exact 2x2 halvings while both sides are even and at least
   4x the working size, then one INTER_AREA step (see `_box_shrink`). Samples
   are put on the 8-bit scale by multiplying by ``2**(8 - bit_depth)`` (no
   rounding, unlike `salmat.color`), so a 10-bit frame and its 8-bit rendition
   differ by at most half an 8-bit step before averaging.
   Chroma is resized to the same working size as luma; for odd frame sizes the
   chroma planes cover half a luma sample more, which is far below one working
   pixel.
2. **Working size.** Width ``working_width`` (default 64 px) whatever the frame
   width (small frames are enlarged to it), height
   ``max(1, round(working_width * H / W))``, so the aspect ratio is kept and the
   map has the same coarseness in every clip. Frames taller than
   ``MAX_WORKING_ASPECT`` (16) : 1 are the exception: their working height is
   capped at ``16 * working_width`` and the width follows the aspect,
   ``max(1, round(16 * working_width * W / H))``, so the working map never
   exceeds ``16 * working_width²`` pixels (65 536 at the default width),
   whatever the frame's shape (a 2x2000 frame would otherwise get a 64x64000
   working map, 1000x its own size). Every frame up to 16 : 1 keeps the rule
   above exactly.
3. **Colour** (where a model needs it): BT.709 limited-range Y'CbCr → R'G'B'
   clipped to [0, 1] (the same matrix as `salmat.color`), then sRGB → CIE Lab
   (D65) in float64 NumPy. OpenCV's float Lab path is not used: it is only
   accurate to ~0.1 Lab unit (a grey frame gets |a|, |b| up to 0.125), and the
   image signature's sign() would amplify that error into full-strength signal.
4. **Spectral coefficients** whose magnitude is at most ``coef_floor`` count as
   exactly zero (sign 0 / dropped). Units are those of the transformed channel
   under orthonormal transforms, where one 8-bit code step at a single pixel of
   a 64x36 working image moves a coefficient by about step/48: ~8e-3 Lab units,
   ~1e-4 on the [0, 1] scale. The defaults (1e-3 Lab units for the signature,
   1e-5 on [0, 1] for the FFT models) sit below that and well above the float32
   round-off of the resize (<1e-4 Lab units, ~1e-7 on [0, 1]), so a flat frame
   or flat chroma gives no spurious signal (sign() and phase-only spectra would
   otherwise blow round-off up to full strength).
5. **Smoothing** with a Gaussian of standard deviation ``sigma_frac *
   working_width`` working pixels (`scipy.ndimage.gaussian_filter`, reflected
   borders, truncated at 4 sigma).
6. **Normalisation**: min-max to [0, 1]. A map whose range is not larger than
   ``1e-9 * max|map|`` (a flat frame) becomes all zeros, never NaN.
7. **Upsampling** to the frame size with `cv2.resize(..., INTER_LINEAR)`, clipped
   to [0, 1], float32 (`salmat.maps.WorkingMaps.upsample`).

Models (``BUILTIN_MODELS``; ``DEFAULT_MODEL_ID = "image_signature_v1"``):

- ``image_signature_v1`` — Hou, Harel & Koch, "Image Signature: Highlighting
  Sparse Salient Regions", IEEE TPAMI 34(1), 2012. Per Lab channel
  ``x̂ = IDCT(sign(DCT(x)))`` (2-D DCT-II, orthonormal); the map is the
  Gaussian-smoothed ``Σ_c x̂_c²``. Parameters: ``working_width=64``,
  ``sigma_frac=0.05`` (σ = 3.2 working px; the paper's "0.05 of the image
  width"), ``coef_floor=1e-3`` (Lab units).
- ``spectral_residual_v1`` — Hou & Zhang, "Saliency Detection: A Spectral
  Residual Approach", CVPR 2007. Grey = luma, ``(Y' - 16) / 219`` on the 8-bit
  scale. ``R = log|F| - box3x3(log|F|)`` (box filter with wrap-around, since the
  spectrum is periodic); map = smoothed ``|IFFT(exp(R + i·phase(F)))|²``.
  Parameters: ``working_width=64``, ``sigma_frac=0.125`` (σ = 8 working px, the
  paper's σ = 8 at 64 px), ``box_size=3``, ``coef_floor=1e-5``.
- ``pqft_v1`` — Guo, Ma & Zhang, "Spatio-temporal Saliency Detection Using
  Phase Spectrum of Quaternion Fourier Transform", CVPR 2008. Quaternion
  ``q = M + RG·μ1 + BY·μ2 + I·μ3`` with ``I = (R+G+B)/3``, ``RG = r - g``,
  ``BY = b - y`` (broadly tuned r, g, b, y colour channels) and motion
  ``M = |I_t - I_{t-1}|``. Computed with the symplectic split
  ``q = f1 + f2·μ2``, ``f1 = M + RG·i``, ``f2 = BY + I·i``: two complex FFTs,
  each divided by the quaternion modulus ``sqrt(|F1|² + |F2|²)`` (phase only),
  inverse FFTs, map = smoothed ``|f1'|² + |f2'|²``. Motion is taken between the
  frames *given to one predict() call, in that order*: the previous frame is the
  previous sampled frame (whatever the sampling step), and the first frame of
  each call has M = 0. Parameters: ``working_width=64``, ``sigma_frac=0.125``
  (σ = 8 working px, as in spectral residual, which PQFT extends),
  ``coef_floor=1e-5`` (R'G'B' units in [0, 1]).

`predict(frames)` needs all frames of one call to share one size and returns
(n, H, W) float32 in [0, 1]; an empty sequence gives an array of shape (0, 0, 0).
`predict_working(frames)` returns the maps before step 7 as `WorkingMaps`, so the
engine can run the linear temporal reducers at working size (see `salmat.maps`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import cv2
import numpy as np

from ..color import BT709_TERMS
from ..frames import YuvFrame, common_size
from ..maps import WorkingMaps
from .base import SaliencyModel

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_MODEL_ID",
    "ImageSignatureModel",
    "SpectralResidualModel",
    "PqftModel",
    "working_size",
    "MAX_WORKING_ASPECT",
]

# Normalisation: a map whose (max - min) is within this fraction of max|map| is flat.
_FLAT_RTOL = 1e-9

# Linear sRGB -> XYZ (D65). The white point is taken as the row sums so that a
# grey pixel maps to a = b = 0 up to round-off.
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_WHITE = _RGB_TO_XYZ.sum(axis=1)


# ---------------------------------------------------------------- preprocessing


# Frames taller than this (height : width) get a capped working height instead of a
# fixed working width, so the working map is never larger than MAX_WORKING_ASPECT · ww².
MAX_WORKING_ASPECT = 16


def working_size(height: int, width: int, working_width: int = 64) -> tuple[int, int]:
    """(h, w) of the working copy: fixed width, aspect kept, height at least 1.

    The height is capped at `MAX_WORKING_ASPECT * working_width`; a frame taller than
    that aspect keeps its aspect with a narrower working width (at least 1), so the
    working map's size is bounded whatever the frame's shape."""
    height_cap = MAX_WORKING_ASPECT * working_width
    small_height = max(1, round(working_width * height / width))
    if small_height <= height_cap:
        return small_height, working_width
    return height_cap, max(1, round(height_cap * width / height))


def _box_shrink(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Box-average a float32 plane to `size` (h, w).

    OpenCV's INTER_AREA is fast only for integer ratios (1440x1080 -> 64x48 takes
    ~4 ms on the general path), so the plane is first halved with exact 2x2 means
    while both sides are even and at least 4x the target; the last INTER_AREA step
    then has a ratio of 4 or more, where its partial-pixel weighting is harmless.
    """
    h, w = size
    while plane.shape[0] % 2 == 0 and plane.shape[1] % 2 == 0 and plane.shape[0] >= 4 * h and plane.shape[1] >= 4 * w:
        plane = cv2.resize(plane, (plane.shape[1] // 2, plane.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(plane, (w, h), interpolation=cv2.INTER_AREA)


def _shrink(plane: np.ndarray, size: tuple[int, int], bit_depth: int) -> np.ndarray:
    """One plane box-averaged to `size` (h, w), float64 on the 8-bit scale."""
    # Float before averaging: an integer resize would round the box means to whole
    # code values, quantising the small map and making 8- and 10-bit maps differ.
    small = _box_shrink(np.ascontiguousarray(plane, dtype=np.float32), size)
    return small.astype(np.float64) * (2.0 ** (8 - bit_depth))


def _small_ycbcr(frame: YuvFrame, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y', Cb, Cr at working size, 8-bit scale."""
    depth = frame.bit_depth
    return _shrink(frame.y, size, depth), _shrink(frame.u, size, depth), _shrink(frame.v, size, depth)


def _luma_unit(y: np.ndarray) -> np.ndarray:
    """Limited-range luma (8-bit scale) to [0, 1]."""
    return np.clip((y - 16.0) / 219.0, 0.0, 1.0)


def _small_rgb(frame: YuvFrame, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) float64 R'G'B' in [0, 1] at working size."""
    y, u, v = _small_ycbcr(frame, size)
    y = (y - 16.0) / 219.0
    cb = (u - 128.0) / 224.0
    cr = (v - 128.0) / 224.0
    kr_v, kg_u, kg_v, kb_u = BT709_TERMS
    rgb = np.stack([y + kr_v * cr, y - kg_u * cb - kg_v * cr, y + kb_u * cb], axis=-1)
    return np.clip(rgb, 0.0, 1.0, out=rgb)


def _rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] -> CIE Lab (D65): L in [0, 100], a/b roughly [-110, 110]."""
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = (lin @ _RGB_TO_XYZ.T) / _WHITE
    eps, kappa = 216.0 / 24389.0, 24389.0 / 27.0
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16.0) / 116.0)
    lab: np.ndarray = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


# ---------------------------------------------------------------- post-processing


# SciPy is imported where it is used: importing it costs ~0.3 s, which a pool worker
# running an ONNX model would otherwise pay at every start.


def _smooth(saliency: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; reflected borders work for any map size, even 1 px."""
    from scipy import ndimage

    return cast(np.ndarray, ndimage.gaussian_filter(saliency, sigma=sigma, mode="reflect", truncate=4.0))


def _normalize(saliency: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; a flat (or non-finite) map becomes zeros instead of NaN."""
    lo, hi = float(saliency.min()), float(saliency.max())
    span = hi - lo
    if not span > _FLAT_RTOL * max(abs(lo), abs(hi)):
        return np.zeros_like(saliency)
    return (saliency - lo) / span


# ---------------------------------------------------------------- algorithms


def image_signature_map(lab: np.ndarray, sigma: float, coef_floor: float) -> np.ndarray:
    """Unnormalised image-signature map of an (h, w, c) image: smoothed Σ_c IDCT(sign(DCT(x_c)))²."""
    from scipy import fft as sfft

    coeffs = sfft.dctn(lab, axes=(0, 1), norm="ortho")
    # Round-off-sized coefficients are zero, not ±1: sign() would turn them into signal.
    signature = np.where(np.abs(coeffs) > coef_floor, np.sign(coeffs), 0.0)
    recon = sfft.idctn(signature, axes=(0, 1), norm="ortho")
    return _smooth(np.sum(recon * recon, axis=-1), sigma)


def spectral_residual_map(gray: np.ndarray, sigma: float, box_size: int, coef_floor: float) -> np.ndarray:
    """Unnormalised spectral-residual map of an (h, w) grey image."""
    from scipy import fft as sfft
    from scipy import ndimage

    spectrum = sfft.fft2(gray, norm="ortho")
    amplitude = np.abs(spectrum)
    significant = amplitude > coef_floor
    # The floor keeps log() finite; those coefficients are dropped below anyway.
    log_amp = np.log(np.maximum(amplitude, coef_floor))
    residual = log_amp - ndimage.uniform_filter(log_amp, size=box_size, mode="wrap")
    phase = np.where(significant, spectrum / np.maximum(amplitude, coef_floor), 0.0)
    recon = sfft.ifft2(np.exp(residual) * phase, norm="ortho")
    return _smooth(recon.real**2 + recon.imag**2, sigma)


def _opponent_channels(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intensity and the RG / BY opponent channels of Guo et al. (after Itti et al.)."""
    r_, g_, b_ = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    red = r_ - (g_ + b_) / 2.0
    green = g_ - (r_ + b_) / 2.0
    blue = b_ - (r_ + g_) / 2.0
    yellow = (r_ + g_) / 2.0 - np.abs(r_ - g_) / 2.0 - b_
    return (r_ + g_ + b_) / 3.0, red - green, blue - yellow


def pqft_map(rgb: np.ndarray, motion: np.ndarray, sigma: float, coef_floor: float) -> np.ndarray:
    """Unnormalised PQFT map from (h, w, 3) R'G'B' and an (h, w) motion channel."""
    from scipy import fft as sfft

    intensity, rg, by = _opponent_channels(rgb)
    # Symplectic split q = f1 + f2·μ2: a left-sided QFT along μ1 is two complex FFTs.
    f1 = sfft.fft2(motion + 1j * rg, norm="ortho")
    f2 = sfft.fft2(by + 1j * intensity, norm="ortho")
    modulus = np.sqrt(f1.real**2 + f1.imag**2 + f2.real**2 + f2.imag**2)
    scale = np.where(modulus > coef_floor, 1.0 / np.maximum(modulus, coef_floor), 0.0)
    g1 = sfft.ifft2(f1 * scale, norm="ortho")
    g2 = sfft.ifft2(f2 * scale, norm="ortho")
    energy = g1.real**2 + g1.imag**2 + g2.real**2 + g2.imag**2
    return _smooth(energy, sigma)


# ---------------------------------------------------------------- models



class _ClassicalModel:
    """Shared plumbing: fingerprint, describe() and the per-frame predict loop."""

    id: str = ""
    algorithm: str = ""
    reference: str = ""
    algo_version: int = 1

    def __init__(self, **parameters: Any) -> None:
        self.parameters: dict[str, Any] = parameters
        summary = ":".join(f"{k}={v!r}" for k, v in sorted(parameters.items()))
        self.fingerprint: str = f"{self.id}:algo={self.algo_version}:{summary}"

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": "builtin",
            "algorithm": self.algorithm,
            "reference": self.reference,
            "parameters": dict(self.parameters),
            "sha256": None,
        }

    @property
    def _sigma(self) -> float:
        return float(self.parameters["sigma_frac"]) * int(self.parameters["working_width"])

    def predict(self, frames: Sequence[YuvFrame]) -> np.ndarray:
        """(n, H, W) float32 maps in [0, 1], one per frame, in the given order."""
        if len(frames) == 0:
            return np.zeros((0, 0, 0), dtype=np.float32)
        return self.predict_working(frames).full()

    def predict_working(self, frames: Sequence[YuvFrame]) -> WorkingMaps:
        """The same maps before upsampling: (n, h, w) at working size, with the frame size."""
        height, width = common_size(frames)
        size = working_size(height, width, int(self.parameters["working_width"]))
        small = np.empty((len(frames), *size), dtype=np.float32)
        state: dict[str, Any] = {}
        for i, frame in enumerate(frames):
            small[i] = _normalize(self._working_map(frame, size, state))
        return WorkingMaps(small, (height, width))

    def _working_map(self, frame: YuvFrame, size: tuple[int, int], state: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.fingerprint}>"


class ImageSignatureModel(_ClassicalModel):
    """Image signature in CIE Lab (Hou, Harel & Koch, TPAMI 2012); the default model."""

    id = "image_signature_v1"
    algorithm = "image signature: IDCT(sign(DCT(x))) per CIE Lab channel, squared, summed, Gaussian-smoothed"
    reference = (
        "X. Hou, J. Harel, C. Koch. Image Signature: Highlighting Sparse Salient Regions. IEEE TPAMI 34(1), 2012"
    )

    def __init__(self, working_width: int = 64, sigma_frac: float = 0.05, coef_floor: float = 1e-3) -> None:
        super().__init__(working_width=working_width, sigma_frac=sigma_frac, coef_floor=coef_floor)

    def _working_map(self, frame: YuvFrame, size: tuple[int, int], state: dict[str, Any]) -> np.ndarray:
        lab = _rgb_to_lab(_small_rgb(frame, size))
        return image_signature_map(lab, self._sigma, float(self.parameters["coef_floor"]))


class SpectralResidualModel(_ClassicalModel):
    """Spectral residual on luma (Hou & Zhang, CVPR 2007)."""

    id = "spectral_residual_v1"
    algorithm = "spectral residual: log-amplitude minus its box-filtered version, original phase, squared inverse FFT"
    reference = "X. Hou, L. Zhang. Saliency Detection: A Spectral Residual Approach. CVPR 2007"

    def __init__(
        self, working_width: int = 64, sigma_frac: float = 0.125, box_size: int = 3, coef_floor: float = 1e-5
    ) -> None:
        super().__init__(working_width=working_width, sigma_frac=sigma_frac, box_size=box_size, coef_floor=coef_floor)

    def _working_map(self, frame: YuvFrame, size: tuple[int, int], state: dict[str, Any]) -> np.ndarray:
        gray = _luma_unit(_shrink(frame.y, size, frame.bit_depth))
        p = self.parameters
        return spectral_residual_map(gray, self._sigma, int(p["box_size"]), float(p["coef_floor"]))


class PqftModel(_ClassicalModel):
    """Phase spectrum of the quaternion Fourier transform with a motion channel (Guo, Ma & Zhang, CVPR 2008)."""

    id = "pqft_v1"
    algorithm = (
        "PQFT: phase-only quaternion Fourier transform of (motion, RG, BY, intensity) via two complex FFTs; "
        "motion = |I_t - I_prev| between consecutive frames of one predict() call (first: 0)"
    )
    reference = (
        "C. Guo, Q. Ma, L. Zhang. Spatio-temporal Saliency Detection Using Phase Spectrum of "
        "Quaternion Fourier Transform. CVPR 2008"
    )

    def __init__(self, working_width: int = 64, sigma_frac: float = 0.125, coef_floor: float = 1e-5) -> None:
        super().__init__(working_width=working_width, sigma_frac=sigma_frac, coef_floor=coef_floor)

    def _working_map(self, frame: YuvFrame, size: tuple[int, int], state: dict[str, Any]) -> np.ndarray:
        rgb = _small_rgb(frame, size)
        intensity = rgb.mean(axis=-1)
        previous = state.get("intensity")
        motion = np.zeros_like(intensity) if previous is None else np.abs(intensity - previous)
        state["intensity"] = intensity
        return pqft_map(rgb, motion, self._sigma, float(self.parameters["coef_floor"]))


DEFAULT_MODEL_ID = ImageSignatureModel.id

BUILTIN_MODELS: dict[str, Callable[[], SaliencyModel]] = {
    model.id: model for model in (ImageSignatureModel, SpectralResidualModel, PqftModel)
}
