"""Paper 000's augmentations: peak scaling, peak elimination, pattern shift (torch, batched).

Paper 000 applies, in this order, (1) scaling of a random subset of peaks by a factor c,
(2) elimination of a random subset of peaks, (3) a shift of the whole pattern along
two-theta. It gives no numbers; ours are in :class:`~xrdpipe.patterns.config.AugmentConfig`.
One augmentation of ours, off by default, comes between (2) and (3): an isotropic strain
(every d-spacing times ``1 + e``), which keeps every lattice symmetry.

On rendered profiles ``(B, n_points)`` (the classifier trains from stored profiles):

* A *peak* is a local maximum over ``+-w`` points (``w = peak_window_deg / step``) that rises
  at least ``peak_min_height`` (of the pattern maximum) above the local baseline.
* The *local baseline* is a running minimum over ``+-2w`` smoothed by a running mean over
  ``+-2w``; edits act on the signal above it: ``y = base + (x - base) * field``.
* Scaling: each picked peak adds ``(c - 1) * window`` to ``field = 1``; elimination: each
  picked peak subtracts ``window`` (clamped to [0, 1]). The window is flat (1) over ``+-w``
  and falls to 0 with a cosine taper at ``+-2w``, so edits have no steps.
* Isotropic strain: the profile at ``phi`` takes the value of the input at
  ``2 asin((1 + e) sin(phi / 2))`` (linear interpolation; points whose source falls outside
  the grid are 0).
* Shift: by ``round(s / step)`` points, ``s ~ U(-max_shift_deg, max_shift_deg)``; vacated
  points are 0.

:func:`augment_peak_list` does the same on peak lists (factor on picked sticks, picked sticks
masked out, a two-theta offset) for data that is still rendered afterwards.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from xrdpipe.patterns.config import AugmentConfig

TINY = 1e-12
"""Guards divisions by a pattern maximum of zero."""


def _half_width(cfg: AugmentConfig, step_deg: float) -> int:
    return max(1, int(round(cfg.peak_window_deg / step_deg)))


def _running(x: Tensor, half: int, mode: str) -> Tensor:
    size = 2 * half + 1
    x3 = x.unsqueeze(1)
    if mode == "max":
        out = F.max_pool1d(x3, size, stride=1, padding=half)
    elif mode == "min":
        out = -F.max_pool1d(-x3, size, stride=1, padding=half)
    else:
        padded = F.pad(x3, (half, half), mode="replicate")
        out = F.avg_pool1d(padded, size, stride=1)
    return out.squeeze(1)


def local_baseline(patterns: Tensor, half_width: int) -> Tensor:
    """Running minimum over ``+-2 half_width`` points, smoothed by a running mean."""
    return _running(_running(patterns, 2 * half_width, "min"), 2 * half_width, "mean")


def find_peaks(patterns: Tensor, half_width: int, min_height: float) -> Tensor:
    """Boolean ``(B, n)`` mask of peak maxima (see the module docstring).

    Args:
        patterns: ``(B, n)`` profiles.
        half_width: a peak is the maximum over ``+-half_width`` points.
        min_height: minimum rise above the local baseline, fraction of the pattern maximum.

    Returns:
        ``(B, n)`` bool.
    """
    is_max = patterns == _running(patterns, half_width, "max")
    rise = patterns - local_baseline(patterns, half_width)
    top = patterns.amax(dim=1, keepdim=True).clamp(min=TINY)
    return is_max & (rise > min_height * top)


def _window_kernel(half_width: int, device: torch.device) -> Tensor:
    """Flat over ``+-w``, cosine taper to 0 at ``+-2w``; shape ``(1, 1, 4w + 1)``."""
    d = torch.arange(-2 * half_width, 2 * half_width + 1, device=device).abs().float()
    taper = 0.5 * (1.0 + torch.cos(math.pi * (d - half_width) / half_width))
    return torch.where(d <= half_width, torch.ones_like(d), taper).view(1, 1, -1)


def _spread(spikes: Tensor, half_width: int) -> Tensor:
    kernel = _window_kernel(half_width, spikes.device)
    return F.conv1d(spikes.unsqueeze(1), kernel, padding=2 * half_width).squeeze(1)


def _pick(
    peaks: Tensor, prob: float, fraction: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Peaks picked in patterns chosen with ``prob``, each peak with ``fraction``."""
    n_samples = peaks.shape[0]
    dev = peaks.device
    chosen = torch.rand(n_samples, 1, generator=generator, device=dev) < prob
    picked = peaks & chosen & (torch.rand(peaks.shape, generator=generator, device=dev) < fraction)
    return picked, chosen.squeeze(1)


def scale_peaks(
    patterns: Tensor, cfg: AugmentConfig, generator: torch.Generator, step_deg: float
) -> Tensor:
    """Scale a random subset of peaks by factors in ``cfg.scale_factor_range``.

    Args:
        patterns: ``(B, n)`` profiles.
        cfg: probabilities and ranges.
        generator: on the patterns' device.
        step_deg: grid spacing, degrees.

    Returns:
        ``(B, n)`` augmented profiles.
    """
    w = _half_width(cfg, step_deg)
    picked, chosen = _pick(
        find_peaks(patterns, w, cfg.peak_min_height),
        cfg.scale_prob,
        cfg.scale_peak_fraction,
        generator,
    )
    lo, hi = cfg.scale_factor_range
    factor = lo + (hi - lo) * torch.rand(
        patterns.shape, generator=generator, device=patterns.device
    )
    field = (1.0 + _spread(torch.where(picked, factor - 1.0, 0.0), w)).clamp(min=0.0)
    base = local_baseline(patterns, w)
    return torch.where(chosen.unsqueeze(1), base + (patterns - base) * field, patterns)


def eliminate_peaks(
    patterns: Tensor, cfg: AugmentConfig, generator: torch.Generator, step_deg: float
) -> Tensor:
    """Remove a random subset of peaks (down to the local baseline).

    Args:
        patterns: ``(B, n)`` profiles.
        cfg: probabilities and fractions.
        generator: on the patterns' device.
        step_deg: grid spacing, degrees.

    Returns:
        ``(B, n)`` augmented profiles.
    """
    w = _half_width(cfg, step_deg)
    picked, chosen = _pick(
        find_peaks(patterns, w, cfg.peak_min_height),
        cfg.eliminate_prob,
        cfg.eliminate_fraction,
        generator,
    )
    field = (1.0 - _spread(picked.float(), w)).clamp(0.0, 1.0)
    base = local_baseline(patterns, w)
    return torch.where(chosen.unsqueeze(1), base + (patterns - base) * field, patterns)


def shift_by_points(patterns: Tensor, shift: Tensor) -> Tensor:
    """Shift each pattern by ``shift[b]`` points (positive: to higher two-theta), zero fill."""
    n = patterns.shape[1]
    source = torch.arange(n, device=patterns.device).unsqueeze(0) - shift.unsqueeze(1)
    inside = (source >= 0) & (source < n)
    gathered = patterns.gather(1, source.clamp(0, n - 1))
    return torch.where(inside, gathered, torch.zeros_like(gathered))


def shift_patterns(
    patterns: Tensor, cfg: AugmentConfig, generator: torch.Generator, step_deg: float
) -> tuple[Tensor, Tensor]:
    """Shift patterns chosen with ``cfg.shift_prob`` by up to ``cfg.max_shift_deg``.

    Args:
        patterns: ``(B, n)`` profiles.
        cfg: probability and range.
        generator: on the patterns' device.
        step_deg: grid spacing, degrees.

    Returns:
        The shifted ``(B, n)`` profiles and the shift of each, in grid points ``(B,)``.
    """
    n_samples = patterns.shape[0]
    dev = patterns.device
    chosen = torch.rand(n_samples, generator=generator, device=dev) < cfg.shift_prob
    shift_deg = cfg.max_shift_deg * (
        2.0 * torch.rand(n_samples, generator=generator, device=dev) - 1.0
    )
    points = torch.round(shift_deg / step_deg).long() * chosen
    return shift_by_points(patterns, points), points


def _isotropic_strains(
    n_samples: int, cfg: AugmentConfig, generator: torch.Generator, device: torch.device
) -> Tensor:
    """``(B,)`` strains ``e ~ U(-max, max)`` of patterns chosen with ``strain_prob``, else 0."""
    chosen = torch.rand(n_samples, generator=generator, device=device) < cfg.strain_prob
    strain = cfg.max_isotropic_strain * (
        2.0 * torch.rand(n_samples, generator=generator, device=device) - 1.0
    )
    return strain * chosen


def strain_patterns(
    patterns: Tensor,
    cfg: AugmentConfig,
    generator: torch.Generator,
    step_deg: float,
    two_theta_start: float,
) -> tuple[Tensor, Tensor]:
    """Strain patterns chosen with ``cfg.strain_prob`` isotropically by up to ``max``.

    Args:
        patterns: ``(B, n)`` profiles on the grid ``two_theta_start + step_deg * i``.
        cfg: probability and range.
        generator: on the patterns' device.
        step_deg: grid spacing, degrees.
        two_theta_start: first grid point, degrees.

    Returns:
        The strained ``(B, n)`` profiles (the others unchanged) and each strain ``e`` ``(B,)``.
    """
    n_samples, n = patterns.shape
    dev = patterns.device
    strain = _isotropic_strains(n_samples, cfg, generator, dev)
    rows = strain.nonzero().squeeze(1)
    if rows.numel() == 0:
        return patterns, strain
    grid = two_theta_start + step_deg * torch.arange(n, device=dev, dtype=torch.float64)
    half_sine = torch.sin(torch.deg2rad(grid) / 2.0).to(patterns.dtype)
    sine = (1.0 + strain[rows]).unsqueeze(1).to(patterns.dtype) * half_sine
    source = torch.rad2deg(2.0 * torch.asin(sine.clamp(max=1.0)))
    index = (source - two_theta_start) / step_deg
    inside = (sine <= 1.0) & (index >= 0.0) & (index <= n - 1)
    lower = index.floor().clamp(0, n - 2).long()
    weight = (index - lower).clamp(0.0, 1.0)
    picked = patterns[rows]
    values = torch.lerp(picked.gather(1, lower), picked.gather(1, lower + 1), weight)
    out = patterns.clone()
    out[rows] = torch.where(inside, values, torch.zeros_like(values))
    return out, strain


def augment_profiles(
    patterns: Tensor,
    cfg: AugmentConfig,
    generator: torch.Generator,
    step_deg: float,
    two_theta_start: float | None = None,
) -> Tensor:
    """Paper 000's sequence on rendered profiles: scaling, elimination, (strain,) shift.

    An augmentation whose probability is 0 is skipped (peak finding is the costly part).

    Args:
        patterns: ``(B, n)`` profiles (e.g. in [0, 1]).
        cfg: probabilities and ranges.
        generator: on the patterns' device.
        step_deg: grid spacing, degrees.
        two_theta_start: first grid point, degrees (needed when ``cfg.strain_prob > 0``).

    Returns:
        ``(B, n)`` augmented profiles (same dtype and device).
    """
    out = patterns
    if cfg.scale_prob > 0:
        out = scale_peaks(out, cfg, generator, step_deg)
    if cfg.eliminate_prob > 0:
        out = eliminate_peaks(out, cfg, generator, step_deg)
    if cfg.strain_prob > 0:
        if two_theta_start is None:
            raise ValueError("an isotropic strain (strain_prob > 0) needs two_theta_start")
        out, _ = strain_patterns(out, cfg, generator, step_deg, two_theta_start)
    if cfg.shift_prob > 0:
        out, _ = shift_patterns(out, cfg, generator, step_deg)
    return out


def augment_peak_list(
    two_theta: Tensor,
    intensity: Tensor,
    mask: Tensor,
    cfg: AugmentConfig,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """The same augmentations on padded peak lists ``(B, P)`` before rendering.

    Args:
        two_theta: degrees.
        intensity: integrated intensities.
        mask: True for real peaks.
        cfg: probabilities and ranges (the window settings are not used).
        generator: on the tensors' device.

    Returns:
        ``(two_theta, intensity, mask)`` after scaling, elimination, strain and shift.
    """
    dev = two_theta.device
    picked, _ = _pick(mask, cfg.scale_prob, cfg.scale_peak_fraction, generator)
    lo, hi = cfg.scale_factor_range
    factor = lo + (hi - lo) * torch.rand(intensity.shape, generator=generator, device=dev)
    intensity = torch.where(picked, intensity * factor, intensity)
    removed, _ = _pick(mask, cfg.eliminate_prob, cfg.eliminate_fraction, generator)
    mask = mask & ~removed
    n_samples = two_theta.shape[0]
    if cfg.strain_prob > 0:
        strain = _isotropic_strains(n_samples, cfg, generator, dev).unsqueeze(1)
        sine = torch.sin(torch.deg2rad(two_theta) / 2.0) / (1.0 + strain)
        two_theta = torch.rad2deg(2.0 * torch.asin(sine.clamp(max=1.0)))
    chosen = torch.rand(n_samples, 1, generator=generator, device=dev) < cfg.shift_prob
    shift = cfg.max_shift_deg * (
        2.0 * torch.rand(n_samples, 1, generator=generator, device=dev) - 1.0
    )
    return two_theta + shift * chosen, intensity, mask
