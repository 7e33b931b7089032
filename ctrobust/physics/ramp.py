"""Ramp filter along the detector axis.

The filter is a real, even frequency response applied with zero padding to an even, 5-smooth
``P >= 2 * n_det - 1``: zero-pad, FFT, multiply, inverse FFT, crop. Zero padding and cropping are
each other's adjoints and circular convolution with a real even kernel is self-adjoint, so the
whole filter H satisfies ``H^T = H`` exactly (up to rounding); its backward is itself.

The response is the DFT of the spatial Ram-Lak kernel of Kak & Slaney (Principles of
Computerized Tomographic Imaging, ch. 3, unit detector spacing): ``h[0] = 1/4``,
``h[k] = -1/(pi k)^2`` for odd ``k`` and 0 for even ``k != 0``. Sampling the kernel in space
rather than the ideal ``|f|`` in frequency avoids the DC offset of the naive discrete ramp.
Because the cropped output only ever meets lags ``|k| <= n_det - 1``, the Ram-Lak filter does
not depend on ``P`` (beyond rounding); only the windows, applied on the P-point grid, do.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import torch

WINDOWS = ("ram-lak", "shepp-logan", "cosine", "hann")


def padded_length(n_det: int) -> int:
    """Smallest even 5-smooth length >= ``2 n_det - 1``.

    ``2 n_det - 1`` leaves room for the linear (not circular) convolution; a 5-smooth length
    keeps the FFT fast while padding up to 25 % less than the next power of two (384 instead
    of 512 for 183 detector pixels). Even, so the one-sided response fixes the length.
    """
    size = 2 * n_det - 1
    while (size := scipy.fft.next_fast_len(size, real=True)) % 2:
        size += 1
    return size


def ramp_response(n_det: int, window: str = "ram-lak") -> np.ndarray:
    """One-sided (rfft) response, length ``P // 2 + 1``, of the windowed Ram-Lak filter."""
    if window not in WINDOWS:
        raise ValueError(f"unknown ramp window {window!r}; choose one of {WINDOWS}")
    size = padded_length(n_det)
    k = np.arange(size)
    k = np.where(k <= size // 2, k, k - size)  # signed circular index: kernel is even in k
    h = np.zeros(size)
    h[0] = 0.25
    odd = k % 2 == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    response = np.fft.rfft(h).real  # h is real and even, so its spectrum is real
    fn = np.fft.rfftfreq(size) / 0.5  # frequency relative to Nyquist, in [0, 1]
    if window == "shepp-logan":
        response = response * np.sinc(fn / 2)
    elif window == "cosine":
        response = response * np.cos(np.pi * fn / 2)
    elif window == "hann":
        response = response * 0.5 * (1 + np.cos(np.pi * fn))
    return response


def apply_ramp(y: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
    """Filter ``y`` (..., n_det) along its last axis with a one-sided ``response``.

    Returns the cropped view of the padded result (not contiguous): the callers that apply the
    projector next lay it out for the sparse product anyway, so a copy here would be wasted.
    """
    n_det = y.shape[-1]
    size = 2 * (response.shape[-1] - 1)
    spectrum = torch.fft.rfft(y, n=size, dim=-1)
    return torch.fft.irfft(spectrum.mul_(response), n=size, dim=-1)[..., :n_det]
