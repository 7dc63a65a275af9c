"""Brindley microabsorption in on-the-fly rendering (torch, vectorised, on the batch's device).

In ``weight`` mode each phase's peaks are scaled by ``w / (rho V^2)`` (Hill-Howard's scale,
:mod:`xrdpipe.diffraction.quantitative`). With a particle radius ``R``
(``MixtureConfig.particle_radius_um``) each phase's intensity is further multiplied by
Brindley's particle absorption factor ``tau_i = tau((mu_i - mu_bar) R)``, ``mu_bar`` the
volume-fraction mean of the mixture's phases: the expression of
:func:`~xrdpipe.diffraction.quantitative.brindley_argument` (the one home, shared with the
refinement that inverts it). The weight fractions are drawn, so ``mu_bar`` follows from them
directly; the iteration of :func:`~xrdpipe.diffraction.quantitative.
hill_howard_weight_fractions` is the inverse problem (fractions from scales).

``tau(a)`` is a sphere integral (~65,000 exponentials per value); here it is computed once
per sampler on an even grid of ``a`` (:func:`~xrdpipe.diffraction.quantitative.
particle_absorption_grid`, at 2theta = 90 degrees as in the refinement) and interpolated
linearly for every (mixture, phase).
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from xrdpipe.diffraction.quantitative import (
    BRINDLEY_LIMIT,
    MicroabsorptionWarning,
    brindley_argument,
    particle_absorption_grid,
    pool_microabsorption,
)
from xrdpipe.errors import ConfigError

if TYPE_CHECKING:
    from xrdpipe.patterns.mixtures import PeakArrays

TAU_TWO_THETA = 90.0
"""The angle of the tabulated ``tau`` (the refinement's default; ``tau`` varies with the
angle at second order in ``a``: 0.482-0.527 at ``a = 0.5``)."""

TAU_STEP = 0.005
"""Grid spacing in ``a``: linear interpolation good to ~1e-5 of ``tau``."""

_WARNED: set[tuple] = set()
"""Pools already warned about in this process (the warning comes once per pool)."""


class ParticleAbsorptionTable:
    """Brindley's ``tau(a)`` tabulated once and interpolated in torch.

    Args:
        a_max: the table covers ``|a| <= a_max`` (beyond it ``a`` is clamped; the pool
            check sizes the table so that no drawn mixture gets there).
        device: where the table lives (the batch's device).
    """

    def __init__(self, a_max: float, device: torch.device | str) -> None:
        a_max = max(float(a_max), 1.0)
        n_points = 2 * math.ceil(a_max / TAU_STEP) + 1
        a, tau = particle_absorption_grid(TAU_TWO_THETA, a_max, n_points)
        self.a_min = float(a[0])
        self.step = float(a[1] - a[0])
        self.tau = torch.as_tensor(np.array(tau), dtype=torch.float64, device=device)

    def __call__(self, a: Tensor) -> Tensor:
        """``tau(a)`` by linear interpolation, any shape, float64."""
        x = ((a.double() - self.a_min) / self.step).clamp(0.0, len(self.tau) - 1.0)
        lo = x.floor().long().clamp(max=len(self.tau) - 2)
        frac = x - lo
        return self.tau[lo] * (1.0 - frac) + self.tau[lo + 1] * frac


def warn_pool(names: list[str], linear_absorption: Tensor, max_radius_um: float) -> float:
    """Warns once per pool when a phase can pass ``|mu_i - mu_bar| R = 0.5``; returns max ``|a|``.

    Args:
        names: the pool's phase names.
        linear_absorption: ``(M, S)`` ``mu``, 1/cm.
        max_radius_um: the largest particle radius drawn, micrometre.

    Returns:
        The largest ``|a|`` any mixture of the pool can reach (sizes the ``tau`` table).
    """
    mu = linear_absorption.detach().double().cpu().numpy()
    flagged = pool_microabsorption(names, mu, max_radius_um)
    reach = float((mu.max() - mu.min()) * max_radius_um * 1e-4)
    key = (tuple(names), round(max_radius_um, 9))
    if flagged and key not in _WARNED:
        _WARNED.add(key)
        listed = "; ".join(f"{p} (against {q}: {a:.3g})" for p, q, a in flagged)
        warnings.warn(
            f"|mu_i - mu_bar| R can exceed {BRINDLEY_LIMIT} at particle radius "
            f"{max_radius_um:g} um for {listed}: Brindley's correction is unreliable there "
            "(rendered intensities of those phases are questionable; use smaller particles)",
            MicroabsorptionWarning,
            stacklevel=4,  # the code that built the sampler
        )
    return reach


class Microabsorption:
    """A sampler's Brindley step: the pool's ``tau`` table and its particle radii.

    Args:
        table: ``tau`` tabulated over the ``a`` the pool can reach.
        radius_range: ``(low, high)`` micrometre; one radius when equal (then nothing is
            drawn from the generator).
    """

    def __init__(self, table: ParticleAbsorptionTable, radius_range: tuple[float, float]):
        self.table = table
        self.radius_range = radius_range

    def draw(
        self,
        fractions: Tensor,
        linear_absorption: Tensor,
        density: Tensor,
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor]:
        """Each mixture's radius ``(B,)`` and each phase's ``tau`` ``(B, K)`` (float64).

        Args:
            fractions: ``(B, K)`` weight fractions (0 for absent slots).
            linear_absorption: ``(B, K)`` ``mu`` of each slot's phase, 1/cm.
            density: ``(B, K)`` g/cm^3.
            generator: draws the radii (uniform in the range).
        """
        lo, hi = self.radius_range
        n, dev = fractions.shape[0], fractions.device
        if hi > lo:
            radius = lo + (hi - lo) * torch.rand(n, generator=generator, device=dev)
        else:
            radius = torch.full((n,), lo, device=dev)
        return radius, brindley_tau(self.table, fractions, linear_absorption, density, radius)


def absorption_table(
    peaks: PeakArrays, radius_range: tuple[float, float] | None, device: torch.device
) -> Microabsorption | None:
    """The sampler's Brindley step (None without a radius), after the pool's warning.

    Raises:
        ConfigError: a radius is set but the arrays carry no ``linear_absorption``.
    """
    if radius_range is None:
        return None
    if peaks.linear_absorption is None:
        raise ConfigError(
            "particle_radius_um needs each material's linear absorption coefficient in the "
            "peak arrays: load them with load_peaks(..., absorption=True)"
        )
    names = list(peaks.names or (f"material {i}" for i in range(peaks.n_materials)))
    reach = warn_pool(names, peaks.linear_absorption, radius_range[1])
    return Microabsorption(ParticleAbsorptionTable(reach, device), radius_range)


def brindley_tau(
    table: ParticleAbsorptionTable,
    fractions: Tensor,
    linear_absorption: Tensor,
    density: Tensor,
    radius_um: Tensor,
) -> Tensor:
    """Each phase's ``tau`` in a batch of mixtures.

    Args:
        table: the tabulated ``tau``.
        fractions: ``(B, K)`` weight fractions (0 for absent slots).
        linear_absorption: ``(B, K)`` ``mu`` of each slot's phase, 1/cm.
        density: ``(B, K)`` g/cm^3.
        radius_um: ``(B,)`` particle radius of each mixture, micrometre.

    Returns:
        ``(B, K)`` float64 ``tau`` (absent slots get their value too; their intensity is 0).
    """
    a = brindley_argument(
        fractions.double(),
        linear_absorption.double(),
        density.double(),
        radius_um.double()[:, None],
    )
    return table(a)
