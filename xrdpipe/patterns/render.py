"""Peak lists to powder patterns on a two-theta grid, batched in torch (paper 002's renderer).

Algorithm, per peak p of sample b (all peaks of a batch at once, no loop over peaks):

1. Discretise the position: ``j = round((2theta - 2theta_min) / step)``; the peak is placed at
   grid point ``j`` (paper 002). Peaks whose ``j`` falls outside the grid are dropped.
   With ``exact_centres=True`` (the instrument path) the peak stays at its exact position
   (see :func:`render_peaks`).
2. Width from Scherrer at the peak's own (undiscretised) angle:
   ``FWHM(rad) = K * lambda / (L * cos(theta))``, ``theta = 2theta / 2``, L the crystallite
   size of the peak's (sample, phase), lambda in the same unit as L.
3. Shape: pseudo-Voigt, symmetric in two-theta, both parts with the same FWHM ``G`` and unit
   area, ``pV(x) = eta * L(x) + (1 - eta) * G(x)`` with
   ``G(x) = 2 sqrt(ln 2 / pi) / G * exp(-4 ln 2 x^2 / G^2)`` and
   ``L(x) = (gamma / pi) / (x^2 + gamma^2)``, ``gamma = G / 2``; ``x = 2theta - 2theta_j``.
   The profile is ``sum_p I_p pV_p(x)`` sampled at the grid points (per degree), so each
   peak's area ``sum * step`` equals its stick intensity ``I_p`` (up to the grid sampling and
   the tails that leave the grid).

Fast evaluation (exact up to ~1e-4 of the pattern maximum, see
``tests/patterns/test_render_mixtures_augment.py``):

* Near part: each peak is evaluated on a window of ``2w+1`` grid points around ``j``, with
  ``w >= WINDOW_HWHM * gamma`` (in grid points); peaks are grouped into a few buckets of
  growing ``w`` so narrow peaks get narrow windows; windows are scatter-added with
  ``index_add_``. Beyond ``w`` the Gaussian is below 2e-4 of its height.
* Far Lorentzian tails: for ``|x| > w0`` (``FAR_CUT_POINTS``) the Lorentzian is split into
  ``gamma/(pi x^2) - gamma^3/(pi x^4)`` (the first terms of its expansion in ``gamma^2/x^2``),
  whose kernels do not depend on the peak, so the tails of all peaks are one FFT
  convolution of two stick histograms (weights ``I eta gamma`` and ``I eta gamma^3``) with two
  fixed kernels, zero-padded (no wrap-around). The window carries the exact remainder
  ``L(x) * gamma^4 / x^4`` for ``w0 < |x| <= w``, so inside the window the sum is exact and
  outside it the error is ``L(x) * (gamma/x)^4 <= 7e-3 L(x)`` (``x >= 3.5 gamma``).

After the peaks (``render_profiles``): per-pattern normalisation to a maximum of 1, Gaussian
noise with standard deviation U(noise_fraction) (of the maximum, i.e. absolute after the
normalisation), an exponential background ``A exp(-(2theta - 2theta_min) / tau)``, and a
final min-max rescaling to [0, 1] (paper 002's order: normalise, noise, background).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xrdpipe.patterns.config import CU_KA_MEAN, ProfileConfig

FOUR_LN2 = 4.0 * math.log(2.0)
"""Gaussian exponent factor for a FWHM parametrisation: exp(-4 ln2 x^2 / FWHM^2)."""
GAUSS_NORM = 2.0 * math.sqrt(math.log(2.0) / math.pi)
"""Unit-area Gaussian height times FWHM."""
NM_PER_ANGSTROM = 0.1
"""Converts the wavelength (angstrom) to the crystallite size unit (nm)."""
WINDOW_HWHM = 3.5
"""Near window half-width in Lorentzian HWHMs: Gaussian < 2e-4 and tail error < 7e-3 L(x)."""
FAR_CUT_POINTS = 8
"""Least distance, grid points, beyond which Lorentzian tails go to the FFT far field (w0)."""
MAX_TAIL_RATIO = 5.0
"""Largest gamma / w0 allowed: bounds the float32 cancellation between window and far field
(the far terms exceed the true tail by at most ``(gamma / w0)^4``)."""
WINDOW_GROWTH = 1.4
"""Ratio between successive window buckets (about 20 % wasted evaluations on average)."""
CHUNK_ELEMENTS = 1 << 16
"""Window values evaluated per step: keeps the temporaries inside the CPU cache."""
TINY = 1e-12
"""Guards divisions by a pattern maximum of zero (an empty pattern stays zero)."""

_KERNEL_CACHE: dict[tuple[int, int, int, str], Tensor] = {}


def two_theta_grid(cfg: ProfileConfig, device: torch.device | str | None = None) -> Tensor:
    """The grid of two-theta values, degrees, float32, shape ``(n_points,)``."""
    return torch.linspace(
        cfg.two_theta_min, cfg.two_theta_max, cfg.n_points, dtype=torch.float32, device=device
    )


def scherrer_fwhm_deg(
    two_theta: Tensor | np.ndarray,
    crystallite_size_nm: Tensor | np.ndarray | float,
    wavelength: Tensor | np.ndarray | float,
    scherrer_k: float,
) -> Any:
    """Scherrer FWHM in degrees two-theta: ``K lambda / (L cos(theta))`` (radians), converted.

    Args:
        two_theta: peak positions, degrees (tensor or array).
        crystallite_size_nm: crystallite size L, nm (broadcasts).
        wavelength: angstrom (broadcasts).
        scherrer_k: shape factor K.

    Returns:
        The FWHM in degrees, same type as ``two_theta``.
    """
    lib = torch if isinstance(two_theta, Tensor) else np
    theta = lib.deg2rad(two_theta) / 2.0
    fwhm_rad = scherrer_k * wavelength * NM_PER_ANGSTROM / (crystallite_size_nm * lib.cos(theta))
    return lib.rad2deg(fwhm_rad)


def _next_fast_len(target: int) -> int:
    """Smallest integer >= target whose prime factors are 2, 3 and 5 (fast FFT sizes)."""
    best = 1 << max(target - 1, 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            value = p35
            while value < target:
                value *= 2
            best = min(best, value)
            p35 *= 3
        p5 *= 5
    return best


def _far_kernels(n_points: int, n_fft: int, cut: int, device: torch.device) -> Tensor:
    """FFTs of the tail kernels ``1/d^2`` and ``1/d^4`` for ``cut < |d| < n_points``."""
    key = (n_points, n_fft, cut, str(device))
    cached = _KERNEL_CACHE.get(key)
    if cached is not None:
        return cached
    d = torch.arange(n_fft, dtype=torch.float64)
    d = torch.where(d >= n_fft // 2, d - n_fft, d)  # signed circular offsets
    far = (d.abs() > cut) & (d.abs() < n_points)
    inv2 = torch.where(far, 1.0 / d.square().clamp(min=1.0), 0.0)
    kernels = torch.stack([inv2, inv2.square()])
    spectra = torch.fft.rfft(kernels, n=n_fft).to(torch.complex64).to(device)
    _KERNEL_CACHE[key] = spectra
    return spectra


def _far_cut(gamma: Tensor) -> int:
    """w0 for a batch: at least FAR_CUT_POINTS and the narrowest window, and gamma/w0 bounded."""
    low = math.ceil(WINDOW_HWHM * float(gamma.min()))
    high = math.ceil(float(gamma.max()) / MAX_TAIL_RATIO)
    return max(FAR_CUT_POINTS, low, high)


def _window_buckets(needed: Tensor, cut: int) -> tuple[Tensor, list[int]]:
    """Bucket index per peak and the bucket half-widths (grid points), geometric from ``cut``."""
    top = int(math.ceil(float(needed.max())))
    widths = [cut]
    while widths[-1] < top:
        widths.append(int(math.ceil(widths[-1] * WINDOW_GROWTH)))
    table = torch.tensor(widths, dtype=needed.dtype, device=needed.device)
    return torch.searchsorted(table, needed.contiguous()), widths


def render_peaks(
    two_theta: Tensor,
    intensity: Tensor,
    mask: Tensor,
    eta: Tensor,
    crystallite_size_nm: Tensor,
    cfg: ProfileConfig,
    wavelength: Tensor | float = CU_KA_MEAN,
    *,
    fwhm_deg: Tensor | None = None,
    exact_centres: bool = False,
) -> Tensor:
    """Deterministic sum of area-normalised pseudo-Voigt peaks on the grid (no noise).

    Args:
        two_theta: peak positions, degrees, ``(B, P)``.
        intensity: integrated intensities (areas, intensity x degrees), ``(B, P)``.
        mask: True for real peaks, ``(B, P)``.
        eta: Lorentzian fraction per peak, ``(B, P)`` (broadcasts).
        crystallite_size_nm: Scherrer size per peak, nm, ``(B, P)`` (broadcasts).
        cfg: grid and Scherrer constant.
        wavelength: angstrom, a float or a per-peak tensor (K-alpha doublets).
        fwhm_deg: per-peak FWHM, degrees, ``(B, P)``; given, it replaces the Scherrer width
            (``crystallite_size_nm`` and ``wavelength`` are then unused).
        exact_centres: centre each peak at its exact position (between grid points) instead
            of the nearest grid point (paper 002); peaks whose centre lies outside
            ``[two_theta_min, two_theta_max]`` are dropped. The far-tail sticks are then
            split linearly between the two grid points around the centre, and each window
            subtracts exactly what that split adds, so only the tails beyond the window carry
            the interpolation error (``<= 0.75 / d^2`` of the tail at ``d`` points).

    Returns:
        ``(B, n_points)`` float32 profile, intensity per degree: ``sum * step ~= sum(I)``.
    """
    assert two_theta.dim() == 2, f"two_theta must be (B, P), got {tuple(two_theta.shape)}"
    device = two_theta.device
    n_samples, n_peaks = two_theta.shape
    n = cfg.n_points
    step = cfg.step_deg
    two_theta = two_theta.float()
    intensity = intensity.float()
    # float64 so that the rounding matches the float64 reference at near-ties
    position = (two_theta.double() - cfg.two_theta_min) / step
    if exact_centres:
        index = torch.floor(position)
        valid = mask & (position >= 0) & (position <= n - 1) & (intensity != 0)
    else:
        index = torch.round(position)
        valid = mask & (index >= 0) & (index <= n - 1) & (intensity != 0)
    if fwhm_deg is None:
        fwhm = scherrer_fwhm_deg(two_theta, crystallite_size_nm, wavelength, cfg.scherrer_k)
    else:
        fwhm = torch.as_tensor(fwhm_deg, dtype=torch.float32, device=device)
    gamma_all = (0.5 / step) * fwhm.expand(n_samples, n_peaks)  # HWHM in grid points
    eta_all = torch.as_tensor(eta, dtype=torch.float32, device=device).expand(n_samples, n_peaks)

    s, p = valid.nonzero(as_tuple=True)  # one nonzero; the gathers below reuse it
    j = index[s, p].long()
    frac = (position[s, p] - index[s, p]).float() if exact_centres else None
    amp = intensity[s, p] / step
    e = eta_all[s, p].float()
    g = gamma_all[s, p].float()
    g2 = g.square()
    a_lor = amp * e * g / math.pi

    out = torch.zeros(n_samples, n, dtype=torch.float32, device=device)
    if s.numel() == 0:
        return out

    # Far Lorentzian tails: FFT convolution of two stick histograms with fixed kernels
    # (exact centres: each stick split between its two grid points, one more column).
    n_row = n + 1 if exact_centres else n
    n_fft = _next_fast_len(2 * n_row - 1)
    hist = torch.zeros(2, n_samples * n_row, dtype=torch.float32, device=device)
    flat = s * n_row + j
    if frac is None:
        hist[0].index_add_(0, flat, a_lor)
        hist[1].index_add_(0, flat, a_lor * g2)
    else:
        for offset, share in ((0, 1.0 - frac), (1, frac)):
            hist[0].index_add_(0, flat + offset, a_lor * share)
            hist[1].index_add_(0, flat + offset, a_lor * g2 * share)
    spectra = torch.fft.rfft(hist.view(2, n_samples, n_row), n=n_fft, dim=-1)  # zero-padded
    cut = _far_cut(g)
    kernels = _far_kernels(n_row, n_fft, cut, device)
    combined = spectra[0] * kernels[0] - spectra[1] * kernels[1].unsqueeze(0)
    out += torch.fft.irfft(combined, n=n_fft, dim=-1)[:, :n]

    # Near windows: exact Gaussian + Lorentzian minus the far terms, bucketed by width;
    # peaks sorted by bucket so that every chunk is a contiguous slice.
    # exact centres: the window reaches one point further, so that beyond it both halves
    # of every split stick are in the far zone (|d| > cut and |d - 1| > cut)
    extra = 1 if exact_centres else 0
    bucket, widths = _window_buckets(WINDOW_HWHM * g + extra, cut + extra)
    order = torch.argsort(bucket)
    counts = torch.bincount(bucket, minlength=len(widths)).tolist()
    pad = widths[int(bucket.max())]
    row = n + 2 * pad
    buffer = torch.zeros(n_samples * row, dtype=torch.float32, device=device)
    base = (s * row + j + pad)[order]
    g, g2, a_lor, amp, e = g[order], g2[order], a_lor[order], amp[order], e[order]
    a_gauss = (amp * (1.0 - e) * (GAUSS_NORM / 2.0) / g).unsqueeze(1)  # FWHM = 2 gamma
    b_gauss = (-(FOUR_LN2 / 4.0) / g2).unsqueeze(1)
    g4 = g2.square().unsqueeze(1)
    a_lor, g2 = a_lor.unsqueeze(1), g2.unsqueeze(1)
    if frac is not None:
        # exact centres: Gaussian as exp(ln a + b x^2); the far terms the window removes are
        # a_lor ((far2 + t step2) - g2 (far4 + t step4)), one (rows x 4) @ (4 x offsets)
        frac = frac[order].unsqueeze(1)
        log_a_gauss = torch.log(a_gauss)
        far_coef = torch.cat([a_lor, -a_lor * g2, a_lor * frac, -a_lor * g2 * frac], dim=1)
    first = 0
    for k, count in enumerate(counts):
        w = widths[k]
        offsets = torch.arange(-w, w + 1, device=device)
        d = offsets.float()
        rows_per_chunk = max(1, CHUNK_ELEMENTS // (2 * w + 1))
        if frac is None:
            dsq = d.square()
            inner = (d.abs() <= cut).float()
            inv4 = torch.where(d.abs() > cut, 1.0 / dsq.square().clamp(min=1.0), 0.0)
        else:
            far2, far4 = _far_terms(d, cut)
            far2_next, far4_next = _far_terms(d - 1.0, cut)
            far_kernel = torch.stack([far2, far4, far2_next - far2, far4_next - far4])
        for start in range(first, first + count, rows_per_chunk):
            sl = slice(start, min(start + rows_per_chunk, first + count))
            if frac is None:
                vals = torch.exp(b_gauss[sl] * dsq) * a_gauss[sl]
                lor = torch.addcmul(inner, g4[sl], inv4) * a_lor[sl]
                vals += lor / (dsq + g2[sl])
            else:
                xsq = (d - frac[sl]).square_()
                vals = torch.addcmul(log_a_gauss[sl], b_gauss[sl], xsq).exp_()
                vals.addcdiv_(a_lor[sl].expand_as(xsq), xsq.add_(g2[sl]))
                vals.addmm_(far_coef[sl], far_kernel, alpha=-1.0)
            positions = base[sl, None] + offsets
            buffer.index_add_(0, positions.reshape(-1), vals.reshape(-1))
        first += count
    out += buffer.view(n_samples, row)[:, pad : pad + n]
    return out


def _far_terms(d: Tensor, cut: int) -> tuple[Tensor, Tensor]:
    """The far-field kernels at integer offsets d: ``1/d^2`` and ``1/d^4`` for ``|d| > cut``."""
    far = d.abs() > cut
    inv2 = torch.where(far, 1.0 / d.square().clamp(min=1.0), 0.0)
    return inv2, inv2.square()


def render_naive(
    two_theta: np.ndarray,
    intensity: np.ndarray,
    mask: np.ndarray,
    eta: np.ndarray | float,
    crystallite_size_nm: np.ndarray | float,
    cfg: ProfileConfig,
    wavelength: np.ndarray | float = CU_KA_MEAN,
    *,
    fwhm_deg: np.ndarray | None = None,
    exact_centres: bool = False,
) -> np.ndarray:
    """Float64 numpy reference of :func:`render_peaks`: every peak on the whole grid.

    Same definition (discretised or exact centres, Scherrer at the undiscretised angle or the
    given FWHM, symmetric pseudo-Voigt in two-theta, unit area, peaks off the grid dropped),
    no windows, no FFT.

    Args:
        two_theta: ``(B, P)`` degrees.
        intensity: ``(B, P)`` integrated intensities.
        mask: ``(B, P)`` bool.
        eta: per-peak Lorentzian fraction (broadcasts to ``(B, P)``).
        crystallite_size_nm: per-peak size, nm (broadcasts to ``(B, P)``).
        cfg: grid and Scherrer constant.
        wavelength: angstrom (broadcasts to ``(B, P)``).
        fwhm_deg: per-peak FWHM, degrees (broadcasts); replaces the Scherrer width.
        exact_centres: centre peaks at their exact positions (see :func:`render_peaks`).

    Returns:
        ``(B, n_points)`` float64 profile, intensity per degree.
    """
    two_theta = np.asarray(two_theta, dtype=np.float64)
    shape = two_theta.shape
    intensity = np.broadcast_to(np.asarray(intensity, dtype=np.float64), shape)
    mask = np.broadcast_to(np.asarray(mask, dtype=bool), shape)
    eta = np.broadcast_to(np.asarray(eta, dtype=np.float64), shape)
    size = np.broadcast_to(np.asarray(crystallite_size_nm, dtype=np.float64), shape)
    wavelength = np.broadcast_to(np.asarray(wavelength, dtype=np.float64), shape)
    if fwhm_deg is not None:
        fwhm_deg = np.broadcast_to(np.asarray(fwhm_deg, dtype=np.float64), shape)
    step = cfg.step_deg
    grid = cfg.two_theta_min + step * np.arange(cfg.n_points)
    out = np.zeros((shape[0], cfg.n_points))
    for b in range(shape[0]):
        position = (two_theta[b] - cfg.two_theta_min) / step
        index = position if exact_centres else np.round(position)
        keep = mask[b] & (index >= 0) & (index <= cfg.n_points - 1)
        center = cfg.two_theta_min + step * index[keep]
        if fwhm_deg is None:
            fwhm = scherrer_fwhm_deg(
                two_theta[b][keep], size[b][keep], wavelength[b][keep], cfg.scherrer_k
            )
        else:
            fwhm = fwhm_deg[b][keep]
        x = grid[None, :] - center[:, None]
        gauss = GAUSS_NORM / fwhm[:, None] * np.exp(-FOUR_LN2 * x**2 / fwhm[:, None] ** 2)
        half = fwhm[:, None] / 2.0
        lor = half / np.pi / (x**2 + half**2)
        e = eta[b][keep][:, None]
        out[b] = (intensity[b][keep][:, None] * (e * lor + (1.0 - e) * gauss)).sum(axis=0)
    return out


def _as_tensor(value: Any, device: torch.device, dtype: torch.dtype) -> Tensor:
    return torch.as_tensor(np.asarray(value) if not isinstance(value, Tensor) else value).to(
        device=device, dtype=dtype
    )


def _uniform(
    bounds: tuple[float, float], shape: tuple[int, ...], generator: torch.Generator, device: Any
) -> Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(shape, generator=generator, device=device)


def _doublet(
    two_theta: Tensor,
    intensity: Tensor,
    mask: Tensor,
    phase_index: Tensor,
    d_spacing: Tensor | None,
    cfg: ProfileConfig,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """K-alpha1 + K-alpha2 peak lists from d-spacings, total area kept; adds a wavelength."""
    if d_spacing is None:
        raise ValueError("ka_doublet=True needs d_spacing (angstrom) for every peak")
    d = d_spacing.float().clamp(min=TINY)
    peaks, intensities, masks, wavelengths = [], [], [], []
    for wl, share in ((cfg.ka1, 1.0), (cfg.ka2, cfg.ka2_ratio)):
        sin_theta = wl / (2.0 * d)
        ok = mask & (sin_theta < 1.0)
        peaks.append(torch.rad2deg(2.0 * torch.asin(sin_theta.clamp(max=1.0))))
        intensities.append(intensity * (share / (1.0 + cfg.ka2_ratio)))
        masks.append(ok)
        wavelengths.append(torch.full_like(two_theta, wl))
    return (
        torch.cat(peaks, dim=1),
        torch.cat(intensities, dim=1),
        torch.cat(masks, dim=1),
        torch.cat([phase_index, phase_index], dim=1),
        torch.cat(wavelengths, dim=1),
    )


def render_profiles(
    two_theta: Tensor | np.ndarray,
    intensity: Tensor | np.ndarray,
    mask: Tensor | np.ndarray,
    cfg: ProfileConfig,
    generator: torch.Generator,
    device: torch.device | str | None = None,
    wavelength: float = CU_KA_MEAN,
    *,
    d_spacing: Tensor | np.ndarray | None = None,
    phase_index: Tensor | None = None,
    eta: Tensor | None = None,
    crystallite_size_nm: Tensor | None = None,
    noise: bool = True,
    background: bool = True,
    instrument_draws: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """Random training profiles: peaks with random shape, normalise, noise, background.

    With ``cfg.instrument`` set, the instrument path renders instead
    (:func:`xrdpipe.patterns.instrument.render_instrument`: exact centres, its corrections,
    widths, shifts, backgrounds and noise).

    Args:
        two_theta: peak positions, degrees, ``(B, P)``.
        intensity: integrated intensities, ``(B, P)`` (already scaled by phase fractions).
        mask: True for real peaks, ``(B, P)``.
        cfg: grid, shape ranges, noise and background ranges.
        generator: a torch generator on ``device``; every random draw comes from it.
        device: where everything is computed (default: the generator's device).
        wavelength: angstrom, used for the Scherrer width (ignored for doublets).
        d_spacing: angstrom, ``(B, P)``; needed when ``cfg.ka_doublet``.
        phase_index: phase of each peak, ``(B, P)`` long in ``0..n_phases-1``; default all 0.
        eta: Lorentzian fraction per (sample, phase), ``(B, n_phases)``; default drawn from
            ``cfg.eta_range``.
        crystallite_size_nm: size per (sample, phase), ``(B, n_phases)``; default drawn from
            ``cfg.crystallite_size_nm``.
        noise: add Gaussian noise.
        background: add the exponential background.
        instrument_draws: the instrument path's draws
            (:func:`xrdpipe.patterns.instrument.draw_instrument`); default drawn here.

    Returns:
        ``(B, n_points)`` float32 in [0, 1] (min-max rescaled after noise and background; with
        both off, the clean profile divided by its maximum).
    """
    device = torch.device(device) if device is not None else generator.device
    tt = _as_tensor(two_theta, device, torch.float32)
    inten = _as_tensor(intensity, device, torch.float32)
    msk = _as_tensor(mask, device, torch.bool)
    n_samples = tt.shape[0]
    if phase_index is None:
        phase_index = torch.zeros(tt.shape, dtype=torch.long, device=device)
    phase_index = phase_index.to(device)
    n_phases = int(phase_index.max()) + 1 if phase_index.numel() else 1
    if eta is None:
        eta = _uniform(cfg.eta_range, (n_samples, n_phases), generator, device)
    if crystallite_size_nm is None:
        crystallite_size_nm = _uniform(
            cfg.crystallite_size_nm, (n_samples, n_phases), generator, device
        )
    dsp = None if d_spacing is None else _as_tensor(d_spacing, device, torch.float32)
    if cfg.instrument is not None:
        from xrdpipe.patterns.instrument import draw_instrument, render_instrument

        if instrument_draws is None:
            instrument_draws = draw_instrument(cfg, n_samples, n_phases, generator, device)
        return render_instrument(
            tt,
            inten,
            msk,
            cfg,
            instrument_draws,
            generator,
            wavelength,
            d_spacing=dsp,
            phase_index=phase_index,
            eta=eta.to(device),
            crystallite_size_nm=crystallite_size_nm.to(device),
            noise=noise,
            background=background,
        )
    zero_shift = _uniform(cfg.zero_shift_deg, (n_samples, 1), generator, device)
    wl: Tensor | float = wavelength
    if cfg.ka_doublet:
        tt, inten, msk, phase_index, wl = _doublet(tt, inten, msk, phase_index, dsp, cfg)
    tt = tt + zero_shift
    peak_eta = eta.to(device).gather(1, phase_index)
    peak_size = crystallite_size_nm.to(device).gather(1, phase_index)
    y = render_peaks(tt, inten, msk, peak_eta, peak_size, cfg, wl)
    y = y / y.amax(dim=1, keepdim=True).clamp(min=TINY)
    if noise:
        sigma = _uniform(cfg.noise_fraction, (n_samples, 1), generator, device)
        y = y + sigma * torch.randn(y.shape, generator=generator, device=device)
    if background:
        amplitude = _uniform(cfg.background_amplitude, (n_samples, 1), generator, device)
        decay = _uniform(cfg.background_decay_deg, (n_samples, 1), generator, device)
        grid = two_theta_grid(cfg, device) - cfg.two_theta_min
        y = y + amplitude * torch.exp(-grid / decay)
    if noise or background:
        low = y.amin(dim=1, keepdim=True)
        y = (y - low) / (y.amax(dim=1, keepdim=True) - low).clamp(min=TINY)
    return y


def render_clean(
    two_theta: Tensor | np.ndarray,
    intensity: Tensor | np.ndarray,
    mask: Tensor | np.ndarray,
    cfg: ProfileConfig,
    device: torch.device | str | None = None,
    wavelength: float = CU_KA_MEAN,
    *,
    d_spacing: Tensor | np.ndarray | None = None,
    normalize: bool = True,
) -> Tensor:
    """Noise-free profiles with the fixed default shape (stored single-phase profiles).

    Uses ``cfg.clean_eta`` and ``cfg.clean_crystallite_size_nm`` for every peak, no zero
    shift, no noise, no background; the K-alpha doublet if ``cfg.ka_doublet``.

    Args:
        two_theta: peak positions, degrees, ``(B, P)``.
        intensity: integrated intensities, ``(B, P)``.
        mask: True for real peaks, ``(B, P)``.
        cfg: grid and the fixed shape.
        device: where to compute (default CPU).
        wavelength: angstrom (Scherrer width when not a doublet).
        d_spacing: angstrom, ``(B, P)``; needed when ``cfg.ka_doublet``.
        normalize: divide each pattern by its maximum (else intensity per degree).

    Returns:
        ``(B, n_points)`` float32.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    tt = _as_tensor(two_theta, device, torch.float32)
    inten = _as_tensor(intensity, device, torch.float32)
    msk = _as_tensor(mask, device, torch.bool)
    wl: Tensor | float = wavelength
    if cfg.ka_doublet:
        dsp = None if d_spacing is None else _as_tensor(d_spacing, device, torch.float32)
        phase = torch.zeros(tt.shape, dtype=torch.long, device=device)
        tt, inten, msk, _, wl = _doublet(tt, inten, msk, phase, dsp, cfg)
    eta = torch.tensor(cfg.clean_eta, device=device)
    size = torch.tensor(cfg.clean_crystallite_size_nm, device=device)
    y = render_peaks(tt, inten, msk, eta, size, cfg, wl)
    if normalize:
        y = y / y.amax(dim=1, keepdim=True).clamp(min=TINY)
    return y
