"""The instrument path of the engine: draws per sample and phase, and the rendering with them.

Used when ``ProfileConfig.instrument`` is set (``render_profiles`` and ``MixtureSampler``
come here). Every random value is drawn by :func:`draw_instrument` and returned, so a
mixture's draws can be read back from ``MixtureDraw.extras``. Per rendered line (K-alpha1
and K-alpha2 separately when ``ka_doublet``), :func:`render_instrument` does, in order:

1. intensity: times the monochromator polarisation ratio and, for an automatic divergence
   slit, ``sin(theta)``, both at the line's Bragg angle (March-Dollase is applied by the
   sampler before, per reflection family);
2. width: TCH from the drawn U, V, W (per sample) and X, Y (per phase) at the Bragg angle, or
   Scherrer with the drawn eta;
3. position: ``2theta_Bragg + zero_shift - 2 s cos(theta) / R`` (see
   :mod:`xrdpipe.patterns.physics`), rendered at its exact position (not rounded to the grid);
4. per pattern: normalise the peaks to a maximum of 1; then either Gaussian noise
   (``noise_fraction``) followed by the backgrounds (paper 002's order), or, with counting
   noise, the backgrounds (exponential, Chebyshev, hump) followed by Poisson counts at the
   drawn count level of the strongest point; finally min-max rescaling to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from xrdpipe.patterns.config import InstrumentConfig, ProfileConfig
from xrdpipe.patterns.orientation import low_index_axes
from xrdpipe.patterns.physics import (
    automatic_slit_factor,
    caglioti_gaussian_fwhm_deg,
    chebyshev_basis,
    chebyshev_grid_coordinate,
    displacement_shift_deg,
    lorentzian_fwhm_deg,
    monochromator_polarisation_ratio,
    pseudo_voigt_height_profile,
    scherrer_x_deg,
    tch_fwhm_eta,
)
from xrdpipe.patterns.render import (
    TINY,
    _doublet,
    _uniform,
    render_peaks,
    scherrer_fwhm_deg,
    two_theta_grid,
)

POISSON_EXACT_BELOW = 50.0
"""Counts below which Poisson noise is drawn exactly (``torch.poisson``); at and above, by its
normal limit ``round(lambda + sqrt(lambda) z)`` (same mean and variance, skewness
``lambda^-1/2 <= 0.14``), about 4x cheaper on a CPU."""


def instrument_of(cfg: ProfileConfig) -> InstrumentConfig:
    """``cfg.instrument``, or a ValueError saying the instrument path needs one."""
    if cfg.instrument is None:
        raise ValueError("this needs ProfileConfig.instrument (got None)")
    return cfg.instrument


def draw_instrument(
    cfg: ProfileConfig,
    n_samples: int,
    n_phases: int,
    generator: torch.Generator,
    device: torch.device | str,
) -> dict[str, Tensor]:
    """Every random instrument, sample and pattern value of a batch, from their ranges.

    Returns:
        Always: ``zero_shift_deg``, ``sample_displacement_mm``, ``background_amplitude``,
        ``background_decay_deg`` ``(B,)``, and ``noise_fraction (B,)`` or, with counting
        noise, ``max_counts (B,)``. With TCH widths: ``caglioti_u_deg2``, ``_v_``, ``_w_``
        ``(B,)``, ``lorentz_y_deg (B, K)`` and ``lorentz_x_deg (B, K)`` when its range is set.
        With preferred orientation: ``march_dollase_ratio (B, K)``, ``march_dollase_axis
        (B, K)`` (index into :func:`~xrdpipe.patterns.orientation.low_index_axes`) and
        ``march_dollase_axis_hkl (B, K, 3)``. With a Chebyshev background:
        ``chebyshev_coefficients (B, order + 1)``. With a hump: ``hump_height``,
        ``hump_center_deg``, ``hump_fwhm_deg`` ``(B,)``.
    """
    inst = instrument_of(cfg)
    device = torch.device(device)
    b, k = (n_samples,), (n_samples, n_phases)

    def uniform(bounds: tuple[float, float], shape: tuple[int, ...]) -> Tensor:
        return _uniform(bounds, shape, generator, device)

    draws = {
        "zero_shift_deg": uniform(cfg.zero_shift_deg, b),
        "sample_displacement_mm": uniform(inst.sample_displacement_mm, b),
        "background_amplitude": uniform(cfg.background_amplitude, b),
        "background_decay_deg": uniform(cfg.background_decay_deg, b),
    }
    if inst.counting_noise is None:
        draws["noise_fraction"] = uniform(cfg.noise_fraction, b)
    else:
        lo, hi = inst.counting_noise.max_counts
        draws["max_counts"] = torch.exp(uniform((math.log(lo), math.log(hi)), b))
    if inst.widths is not None:
        tch = inst.widths
        draws["caglioti_u_deg2"] = uniform(tch.caglioti_u_deg2, b)
        draws["caglioti_v_deg2"] = uniform(tch.caglioti_v_deg2, b)
        draws["caglioti_w_deg2"] = uniform(tch.caglioti_w_deg2, b)
        if tch.lorentz_x_deg is not None:
            draws["lorentz_x_deg"] = uniform(tch.lorentz_x_deg, k)
        draws["lorentz_y_deg"] = uniform(tch.lorentz_y_deg, k)
    if inst.preferred_orientation is not None:
        po = inst.preferred_orientation
        axes = torch.as_tensor(low_index_axes(po.max_axis_index), device=device)
        draws["march_dollase_ratio"] = uniform(po.ratio, k)
        axis = torch.randint(0, len(axes), k, generator=generator, device=device)
        draws["march_dollase_axis"] = axis
        draws["march_dollase_axis_hkl"] = axes[axis]
    if inst.chebyshev_background is not None:
        cheb = inst.chebyshev_background
        coefficients = uniform(cheb.coefficient, (n_samples, cheb.order + 1))
        coefficients[:, 0] = uniform(cheb.constant, b)
        draws["chebyshev_coefficients"] = coefficients
    if inst.amorphous_hump is not None:
        hump = inst.amorphous_hump
        draws["hump_height"] = uniform(hump.height, b)
        draws["hump_center_deg"] = uniform(hump.center_deg, b)
        draws["hump_fwhm_deg"] = uniform(hump.fwhm_deg, b)
    return draws


def instrument_background(
    cfg: ProfileConfig, draws: Mapping[str, Tensor], device: torch.device | str
) -> Tensor:
    """Exponential + Chebyshev + hump background of each pattern, ``(B, n_points)``.

    In units of the normalised peak maximum: ``A exp(-(2theta - 2theta_min) / tau)``
    ``+ max(0, sum_k c_k T_k(x))`` ``+ h pV(2theta - c; F, eta)`` (each term only if
    configured; the exponential with ``A = 0`` when its range is (0, 0)).
    """
    inst = instrument_of(cfg)
    grid = two_theta_grid(cfg, device)
    amplitude = draws["background_amplitude"].unsqueeze(1)
    decay = draws["background_decay_deg"].unsqueeze(1)
    total = amplitude * torch.exp(-(grid - cfg.two_theta_min) / decay)
    if inst.chebyshev_background is not None:
        coefficients = draws["chebyshev_coefficients"]
        x = chebyshev_grid_coordinate(grid, cfg.two_theta_min, cfg.two_theta_max)
        basis = chebyshev_basis(x, coefficients.shape[1] - 1)
        total = total + (coefficients @ basis).clamp(min=0.0)
    if inst.amorphous_hump is not None:
        hump = inst.amorphous_hump
        offset = grid - draws["hump_center_deg"].unsqueeze(1)
        shape = pseudo_voigt_height_profile(offset, draws["hump_fwhm_deg"].unsqueeze(1), hump.eta)
        total = total + draws["hump_height"].unsqueeze(1) * shape
    return total


def counting_noise(expected: Tensor, max_counts: Tensor, generator: torch.Generator) -> Tensor:
    """Poisson counts of a pattern scaled so that its strongest point expects ``max_counts``.

    Args:
        expected: ``(B, n)`` non-negative expected signal (any scale).
        max_counts: ``(B,)`` counts at each pattern's maximum.
        generator: the random stream.

    Returns:
        ``(B, n)`` counts (whole numbers, float32): exact Poisson below
        :data:`POISSON_EXACT_BELOW` expected counts, its normal limit above.
    """
    scale = max_counts.unsqueeze(1) / expected.amax(dim=1, keepdim=True).clamp(min=TINY)
    rate = expected.clamp(min=0.0) * scale
    normal = torch.randn(rate.shape, generator=generator, device=rate.device)
    counts = torch.round(rate + rate.sqrt() * normal).clamp_(min=0.0)
    small = rate < POISSON_EXACT_BELOW
    if bool(small.any()):
        counts[small] = torch.poisson(rate[small], generator=generator)
    return counts


def line_widths(
    cfg: ProfileConfig,
    draws: Mapping[str, Tensor],
    bragg_two_theta: Tensor,
    phase_index: Tensor,
    wavelength: Tensor | float,
    eta: Tensor,
    crystallite_size_nm: Tensor,
) -> tuple[Tensor, Tensor]:
    """FWHM (degrees) and eta of every line ``(B, P)``: TCH if configured, else Scherrer."""
    inst = instrument_of(cfg)
    size = crystallite_size_nm.gather(1, phase_index)
    if inst.widths is None:
        fwhm = scherrer_fwhm_deg(bragg_two_theta, size, wavelength, cfg.scherrer_k)
        return fwhm, eta.gather(1, phase_index)
    gauss = caglioti_gaussian_fwhm_deg(
        bragg_two_theta,
        draws["caglioti_u_deg2"].unsqueeze(1),
        draws["caglioti_v_deg2"].unsqueeze(1),
        draws["caglioti_w_deg2"].unsqueeze(1),
    )
    if "lorentz_x_deg" in draws:
        x_deg = draws["lorentz_x_deg"].gather(1, phase_index)
    else:
        x_deg = scherrer_x_deg(size, wavelength, cfg.scherrer_k)
    y_deg = draws["lorentz_y_deg"].gather(1, phase_index)
    return tch_fwhm_eta(gauss, lorentzian_fwhm_deg(bragg_two_theta, x_deg, y_deg))


def render_instrument(
    two_theta: Tensor,
    intensity: Tensor,
    mask: Tensor,
    cfg: ProfileConfig,
    draws: Mapping[str, Tensor],
    generator: torch.Generator,
    wavelength: float,
    *,
    d_spacing: Tensor | None,
    phase_index: Tensor,
    eta: Tensor,
    crystallite_size_nm: Tensor,
    noise: bool = True,
    background: bool = True,
) -> Tensor:
    """Training profiles through the instrument model (steps in the module docstring).

    Args:
        two_theta: peak positions, degrees, ``(B, P)`` (the store's, at ``wavelength``).
        intensity: integrated intensities ``(B, P)`` (fractions and March-Dollase applied).
        mask: real peaks ``(B, P)``.
        cfg: grid, lines and ``cfg.instrument``.
        draws: :func:`draw_instrument`'s values for this batch.
        generator: the random stream of the noise.
        wavelength: angstrom, the single line when ``ka_doublet`` is off.
        d_spacing: angstrom ``(B, P)``; needed for the doublet.
        phase_index: phase of each peak ``(B, P)``.
        eta: ``(B, K)`` Lorentzian fractions (Scherrer widths only).
        crystallite_size_nm: ``(B, K)`` sizes (Scherrer widths, or TCH's X when not drawn).
        noise: add noise (Gaussian, or Poisson counts).
        background: add the backgrounds.

    Returns:
        ``(B, n_points)`` float32 in [0, 1].
    """
    inst = instrument_of(cfg)
    wl: Tensor | float = wavelength
    if cfg.ka_doublet:
        two_theta, intensity, mask, phase_index, wl = _doublet(
            two_theta, intensity, mask, phase_index, d_spacing, cfg
        )
    bragg = two_theta
    if inst.monochromator_two_theta_deg is not None:
        intensity = intensity * monochromator_polarisation_ratio(
            bragg, inst.monochromator_two_theta_deg
        )
    if inst.divergence_slit == "automatic":
        intensity = intensity * automatic_slit_factor(bragg)
    fwhm, line_eta = line_widths(cfg, draws, bragg, phase_index, wl, eta, crystallite_size_nm)
    shift = draws["zero_shift_deg"].unsqueeze(1) + displacement_shift_deg(
        bragg, draws["sample_displacement_mm"].unsqueeze(1), inst.goniometer_radius_mm
    )
    y = render_peaks(
        bragg + shift,
        intensity,
        mask,
        line_eta,
        crystallite_size_nm,
        cfg,
        wl,
        fwhm_deg=fwhm,
        exact_centres=True,
    )
    y = y / y.amax(dim=1, keepdim=True).clamp(min=TINY)
    if noise and inst.counting_noise is None:
        sigma = draws["noise_fraction"].unsqueeze(1)
        y = y + sigma * torch.randn(y.shape, generator=generator, device=y.device)
    if background:
        y = y + instrument_background(cfg, draws, y.device)
    if noise and inst.counting_noise is not None:
        y = counting_noise(y, draws["max_counts"], generator)
    if noise or background:
        low = y.amin(dim=1, keepdim=True)
        y = (y - low) / (y.amax(dim=1, keepdim=True) - low).clamp(min=TINY)
    return y
