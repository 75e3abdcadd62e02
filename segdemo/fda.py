"""Fourier Domain Adaptation (Yang & Soatto, CVPR 2020) as plain, batched library functions.

FDA gives a source (GTA5) image the "style" of a target (Cityscapes) image by replacing the
low-frequency part of the source's Fourier amplitude with the target's, keeping the source phase
(which carries the semantic content). ``beta`` sets the size of the swapped window.

Apply it to raw images (e.g. 0..255 or 0..1 floats) *before* mean subtraction / normalisation, as
the paper's authors recommend; the output is not clipped, so clip it yourself for display.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "amplitude_spectra",
    "entropy_loss",
    "fda_preview",
    "fda_source_to_target",
    "resize_to",
    "translate_image",
]


def _half_window(height: int, width: int, beta: float) -> int:
    # Same formula as the reference implementation: b = floor(min(H, W) * beta).
    return math.floor(min(height, width) * beta)


def _validate(source: Any, target: Any, beta: Any) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Check the inputs; return 4-D views of both and whether the source was a single 3-D image."""
    for name, x in (("source", source), ("target", target)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() not in (3, 4):
            raise ValueError(f"{name} must be N x 3 x H x W (or 3 x H x W), got shape {tuple(x.shape)}")
        if x.shape[-3] != 3:
            raise ValueError(f"{name} must have 3 channels on axis -3, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor (use .float()), got {x.dtype}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta):
        raise ValueError(f"beta must be a finite number in [0, 0.5), got {beta!r}")
    if not 0.0 <= beta < 0.5:
        raise ValueError(f"beta must be in [0, 0.5) so the window fits in the spectrum, got {beta}")

    single = source.dim() == 3
    src = source.unsqueeze(0) if single else source
    tgt = target.unsqueeze(0) if target.dim() == 3 else target
    if src.shape[-2:] != tgt.shape[-2:]:
        raise ValueError(
            f"source and target must have the same spatial size: source is {src.shape[-2]} x "
            f"{src.shape[-1]}, target is {tgt.shape[-2]} x {tgt.shape[-1]} (resize or crop the target first)"
        )
    if tgt.shape[0] not in (1, src.shape[0]):
        raise ValueError(
            f"target batch size must be 1 (broadcast) or equal to the source's {src.shape[0]}, got "
            f"{tgt.shape[0]}"
        )
    return src, tgt, single


def fda_source_to_target(source: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Swap the low-frequency amplitude of ``source`` for that of ``target``; keep the source phase.

    Definition (per image and channel, full 2-D DFT): with ``A = |F|`` and ``P = angle(F)``,
    fftshift both spectra, copy the target amplitude into the source amplitude inside the
    ``(2b+1) x (2b+1)`` window centred on zero frequency, ``b = floor(min(H, W) * beta)``, then
    return ``real(ifft2(A' * exp(i P_src)))``. ``beta == 0`` means "off": nothing is swapped and the
    output equals the source (any ``beta > 0`` swaps at least the 1 x 1 DC term, i.e. the mean colour).

    The window is symmetric under ``k -> -k``, so the new spectrum stays Hermitian and the real FFT
    gives exactly that result: in ``rfft2``'s half spectrum the window is rows ``-b..b`` (wrapping
    around) by columns ``0..b``; the mirrored columns ``-b..-1`` are implied by symmetry. Small
    windows (the paper's betas) skip the FFTs altogether: only the window's coefficients are computed
    and the inverse DFT of their change is added to the source (see :data:`WINDOW_DFT_MAX_COLUMNS`).

    Args:
        source: float ``N x 3 x H x W`` (or ``3 x H x W``) images, any device.
        target: float ``N x 3 x H x W``, or ``1 x 3 x H x W`` / ``3 x H x W`` broadcast to every
            source image; same ``H x W`` as the source. Moved to the source's device.
        beta: window size in ``[0, 0.5)`` (the paper uses 0.01 - 0.09).

    Returns:
        Tensor shaped and typed like ``source``; not clipped.
    """
    src, tgt, single = _validate(source, target, beta)
    if beta == 0:
        return source.clone()
    height, width = src.shape[-2:]
    b = _half_window(height, width, beta)
    # torch.fft only handles power-of-two sizes in half precision; compute those in float32.
    work_dtype = torch.float32 if src.dtype in (torch.float16, torch.bfloat16) else src.dtype
    # Contiguous: both routes are several times slower on strided (e.g. channels_last) batches.
    src_work = src.to(work_dtype).contiguous()
    tgt_work = tgt.to(device=src.device, dtype=work_dtype).contiguous()
    # TF32 matrix products (if a caller enabled them) would round pixels to 10 bits: FFTs then.
    tf32 = src_work.is_cuda and torch.backends.cuda.matmul.allow_tf32
    if (b + 1) <= WINDOW_DFT_MAX_COLUMNS and not tf32:
        out = _fda_window_dft(src_work, tgt_work, b)
    else:
        out = _fda_real_fft(src_work, tgt_work, b)
    out = out.to(source.dtype)
    return out[0] if single else out


WINDOW_DFT_MAX_COLUMNS = 48
"""Up to this many spectrum columns in the window (``b + 1``), FDA computes only the window's DFT
coefficients (matrix products) instead of whole FFTs: 3-4x faster at beta = 0.01 on 512 x 1024 and
equal within float rounding. The window route costs ``~(b + 1)`` multiply-adds per pixel, the FFT
``~log(H W)``; on 2 CPU cores at 512 x 1024 they break even near 60 columns (beta ~ 0.12)."""


def _fda_real_fft(src: torch.Tensor, tgt: torch.Tensor, b: int) -> torch.Tensor:
    """The swap on whole real-FFT half spectra (any window size)."""
    height, width = src.shape[-2:]
    fft_src = torch.fft.rfft2(src)
    fft_tgt = torch.fft.rfft2(tgt)
    # b < min(H, W) / 2 because beta < 0.5, so rows 0..b and H-b..H-1 never overlap.
    rows = torch.cat([torch.arange(0, b + 1), torch.arange(height - b, height)]).to(src.device)
    win_src = fft_src[:, :, rows, : b + 1]
    amp_tgt = fft_tgt[:, :, rows, : b + 1].abs().expand_as(win_src)
    fft_src[:, :, rows, : b + 1] = torch.polar(amp_tgt, win_src.angle())  # in place: fft_src is ours
    return torch.fft.irfft2(fft_src, s=(height, width))


@functools.lru_cache(maxsize=32)
def _twiddles(n: int, freqs: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``n x 2F``: cos then sin of ``2 pi f x / n`` for x = 0..n-1 and each f in ``freqs``.

    The angle is reduced modulo ``n`` in integers and taken in float64, so large ``f x`` lose no precision.
    """
    x = torch.arange(n, dtype=torch.int64)[:, None]
    f = torch.tensor(freqs, dtype=torch.int64)[None, :]
    angle = (x * f % n).to(torch.float64) * (2.0 * math.pi / n)
    return torch.cat([torch.cos(angle), torch.sin(angle)], dim=1).to(device=device, dtype=dtype)


def _fda_window_dft(src: torch.Tensor, tgt: torch.Tensor, b: int) -> torch.Tensor:
    """The swap computed on the window alone: ``src + irfft2(new window - old window)``.

    The inverse DFT is linear and the swap changes only the window, so the result is the source plus
    the inverse DFT of the change, a sum of ``(2b+1) x (b+1)`` waves. The forward coefficients of the
    window and that sum are separable matrix products over rows and columns: about ``3 (b+1)``
    multiply-adds per pixel, against whole FFTs for the other route.
    """
    n_src, channels, height, width = src.shape
    cols = b + 1
    rows = tuple(range(b + 1)) + tuple(range(-b, 0))
    complex_dtype = torch.complex128 if src.dtype == torch.float64 else torch.complex64
    col_waves = _twiddles(width, tuple(range(cols)), src.dtype, src.device)  # W x 2cols: cos | sin
    row_waves = _twiddles(height, rows, src.dtype, src.device)
    # e^{+2 pi i k y / H} for the window's rows k: H x (2b+1)
    row_exp = torch.complex(row_waves[:, : len(rows)], row_waves[:, len(rows) :]).to(complex_dtype)

    def window(images: torch.Tensor) -> torch.Tensor:
        """DFT coefficients of the window: (N*3) x (2b+1) x (b+1), rows as listed, columns 0..b."""
        count = images.shape[0] * channels
        per_row = images.reshape(count * height, width) @ col_waves  # sum_x image e^{-i..} = cos - i sin
        per_row = torch.complex(per_row[:, :cols], -per_row[:, cols:]).reshape(count, height, cols)
        stacked = per_row.transpose(0, 1).reshape(height, count * cols)  # one product for every image
        coeffs = row_exp.conj().transpose(0, 1) @ stacked
        return coeffs.reshape(len(rows), count, cols).transpose(0, 1)

    win_src, win_tgt = window(src), window(tgt)
    if win_tgt.shape[0] != win_src.shape[0]:  # one target for every source image
        win_tgt = win_tgt.repeat(n_src, 1, 1)
    delta = torch.polar(win_tgt.abs(), win_src.angle()) - win_src
    # Columns 1..b stand for their mirrored twins -1..-b too (Hermitian spectrum): weight 2, then Re.
    weight = torch.full((cols,), 2.0, dtype=src.dtype, device=src.device)
    weight[0] = 1.0
    delta = delta * (weight / (height * width))
    count = n_src * channels
    per_row = row_exp @ delta.transpose(0, 1).reshape(len(rows), count * cols)  # H x (N*3*cols)
    per_row = per_row.reshape(height, count, cols).transpose(0, 1).reshape(count * height, cols)
    # Re(P e^{+i..}) = Re(P) cos - Im(P) sin, added to the source in the same product.
    waves = torch.cat([per_row.real, -per_row.imag], dim=1)
    out = torch.addmm(src.reshape(count * height, width), waves, col_waves.transpose(0, 1))
    return out.reshape(n_src, channels, height, width)


def _log_amplitude(image: torch.Tensor) -> np.ndarray:
    """fftshift-ed log1p|F| of a 3 x H x W image, averaged over channels, as an H x W numpy array."""
    spec = torch.fft.fft2(image.detach().to(torch.float64).cpu())
    spec = torch.fft.fftshift(torch.log1p(spec.abs()), dim=(-2, -1)).mean(dim=0)
    return spec.numpy().astype(np.float32)


def amplitude_spectra(source: torch.Tensor, target: torch.Tensor, beta: float) -> dict[str, Any]:
    """Spectra of one FDA swap, for display.

    Args:
        source, target: one image each, ``3 x H x W`` or ``1 x 3 x H x W`` float tensors.
        beta: as in :func:`fda_source_to_target`.

    Returns:
        dict with ``"source"``, ``"target"``, ``"result"``: H x W float32 numpy arrays of
        ``log1p|F|`` (fftshift-ed, zero frequency at ``(H // 2, W // 2)``, mean over channels);
        ``"window"``: ``(top, left, bottom, right)`` of the swapped box in the shifted spectrum,
        bottom/right exclusive so ``spec[top:bottom, left:right]`` is the window (an empty box when
        ``beta == 0``); ``"b"``: the half-size ``floor(min(H, W) * beta)``.
    """
    src, tgt, _ = _validate(source, target, beta)
    if src.shape[0] != 1 or tgt.shape[0] != 1:
        raise ValueError(
            f"amplitude_spectra takes single images, got batches of {src.shape[0]} and {tgt.shape[0]}"
        )
    result = fda_source_to_target(src, tgt, beta)
    height, width = src.shape[-2:]
    b = _half_window(height, width, beta)
    ch, cw = height // 2, width // 2
    window = (ch, cw, ch, cw) if beta == 0 else (ch - b, cw - b, ch + b + 1, cw + b + 1)
    return {
        "source": _log_amplitude(src[0]),
        "target": _log_amplitude(tgt[0]),
        "result": _log_amplitude(result[0]),
        "window": window,
        "b": b,
    }


def entropy_loss(logits: torch.Tensor, eta: float = 2.0, *, eps: float = 1e-8) -> torch.Tensor:
    """FDA's robust (Charbonnier-penalised) entropy loss on target-domain predictions.

    Per pixel, with ``p = softmax(logits)`` over the ``C`` classes::

        ent  = -sum_c p_c log p_c / log(C)       # normalised entropy, in [0, 1]
        loss = mean over pixels of (ent^2 + eps)^eta

    The paper writes the penalty as ``rho(x) = (x^2 + 0.001^2)^eta``; the authors' released code
    uses ``eps = 1e-8`` (and divides by ``log 19``), which is the default here. ``eta = 2`` is the
    paper's setting; with ``eta > 0.5`` the penalty is flatter than ``ent`` near zero, so confident
    pixels get small gradients and uncertain ones dominate.

    Args:
        logits: ``N x C x ...`` raw scores (softmax is applied here), ``C >= 2``.
        eta: exponent of the penalty.
        eps: smoothing constant inside the penalty.

    Returns:
        Scalar tensor (float32 for half-precision input).
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() < 2:
        raise ValueError("logits must be a tensor shaped N x C x ...")
    num_classes = logits.shape[1]
    if num_classes < 2:
        raise ValueError(f"entropy needs at least 2 classes on axis 1, got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    # Half precision underflows in p * log p; the loss is cheap, so compute it in float32.
    x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    log_p = F.log_softmax(x, dim=1)
    ent = -(log_p.exp() * log_p).sum(dim=1) / math.log(num_classes)
    return ((ent * ent + eps) ** eta).mean()


# ---------------------------------------------------------------------------------------------
# App-facing helpers on 8-bit images
# ---------------------------------------------------------------------------------------------


def _uint8_rgb(image: Any, name: str) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
        raise ValueError(f"{name} must be an H x W x 3 uint8 RGB array, got {array.dtype} {array.shape}")
    return array


def resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An ``H x W x 3`` uint8 image resized (bilinear, antialiased) to ``size`` = (height, width)."""
    from PIL import Image

    image = _uint8_rgb(image, "image")
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    # Raw 0..255 values, as FDA works on pixel values before normalisation.
    return torch.from_numpy(np.array(image, dtype=np.float32)).permute(
        2, 0, 1
    )  # a copy: inputs may be read-only


def translate_image(source: np.ndarray, target: np.ndarray, beta: float) -> np.ndarray:
    """FDA on two 8-bit RGB images: the source with the target's low-frequency amplitude.

    The target is resized to the source's size first (FDA mixes spectra pixel by pixel); the result
    is clipped to 0..255 and rounded, an ``H x W x 3`` uint8 image the size of ``source``.
    """
    source = _uint8_rgb(source, "source")
    target = resize_to(_uint8_rgb(target, "target"), source.shape[:2])
    out = fda_source_to_target(_to_tensor(source), _to_tensor(target), beta)
    return out.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _crop_centre(
    spec: np.ndarray, window: tuple[int, int, int, int], zoom: float
) -> tuple[np.ndarray, tuple]:
    """The central 1/zoom of a shifted spectrum (zero frequency stays in the middle), window moved along."""
    height, width = spec.shape
    ch, cw = height // 2, width // 2
    half_h, half_w = max(1, round(height / zoom / 2)), max(1, round(width / zoom / 2))
    top, left = max(ch - half_h, 0), max(cw - half_w, 0)
    crop = spec[top : min(ch + half_h, height), left : min(cw + half_w, width)]
    t, lft, b, r = window
    return crop, (t - top, lft - left, b - top, r - left)


class FDAPreview(NamedTuple):
    """Output of :func:`fda_preview`: one amplitude swap and its spectra, as numpy arrays the source's
    size."""

    result: np.ndarray
    """H x W x 3 uint8: the source in the target's style (:func:`translate_image`)."""
    target: np.ndarray
    """The target image resized to the source's size."""
    spectra: dict[str, np.ndarray]
    """``{"source", "target", "result"}``: RGB pictures of the log-amplitude spectra with the swapped window
    outlined (see :func:`segdemo.viz.spectrum_image`)."""
    window: tuple[int, int, int, int]
    """The swapped window in the spectrum pictures, as :func:`amplitude_spectra` gives it."""
    b: int
    """Half-size of the window; it is ``2b+1`` frequencies wide."""
    zoom: float


def fda_preview(source: np.ndarray, target: np.ndarray, beta: float, zoom: float = 1.0) -> FDAPreview:
    """Everything the app's FDA page shows, from two 8-bit RGB images (see :class:`FDAPreview`).

    ``zoom > 1`` shows only the central ``1/zoom`` of each spectrum, enlarged back to the image size
    (nearest neighbour), so small windows are visible.
    """
    import cv2

    from segdemo.viz import spectrum_image

    if isinstance(zoom, bool) or not isinstance(zoom, (int, float)) or not 1.0 <= zoom <= 64.0:
        raise ValueError(f"zoom must be a number in [1, 64], got {zoom!r}")
    source = _uint8_rgb(source, "source")
    target = resize_to(_uint8_rgb(target, "target"), source.shape[:2])
    spectra = amplitude_spectra(_to_tensor(source), _to_tensor(target), beta)
    height, width = source.shape[:2]
    pictures = {}
    for key in ("source", "target", "result"):
        spec, window = spectra[key], spectra["window"]
        if zoom > 1.0:
            spec, window = _crop_centre(spec, window, zoom)
        thickness = max(1, round(min(spec.shape) / 160))
        picture = spectrum_image(spec, window=window if beta > 0 else None, thickness=thickness)
        if picture.shape[:2] != (height, width):
            picture = cv2.resize(picture, (width, height), interpolation=cv2.INTER_NEAREST)
        pictures[key] = picture
    return FDAPreview(
        result=translate_image(source, target, beta),
        target=target,
        spectra=pictures,
        window=spectra["window"],
        b=spectra["b"],
        zoom=float(zoom),
    )
