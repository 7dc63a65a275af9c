"""The draws of measured-like training: peak lists rendered through the instrument on the fly.

:class:`MeasuredLikeSampler` draws what :mod:`xrdpipe.training.measured_like` trains its
classifier on (one phase per pattern) and what :mod:`xrdpipe.training.mixture_detector` trains
the mixture detector on (one to a few phases per pattern).
"""

from __future__ import annotations

import torch
from torch import Tensor

from xrdpipe.patterns.config import MixtureConfig, ProfileConfig
from xrdpipe.patterns.mixtures import MixtureSampler, PeakArrays
from xrdpipe.patterns.render import render_profiles


class MeasuredLikeSampler:
    """Measured-like patterns of a pool of materials (:mod:`xrdpipe.training.measured_like`).

    With ``max_phases`` 1 (the classifier's draws) every pattern is one phase. With more,
    :meth:`sample_mixtures` draws 1 to ``max_phases`` distinct materials per pattern (uniform),
    their intensity fractions flat on the simplex (paper 002's draw), each phase with its own
    isotropic strain, crystallite size and preferred orientation, one instrument per scan:
    the patterns the mixture detector of the one-phase flag learns from.

    Args:
        peaks: the materials' peak lists ``(M, S, P)`` (with orientation data when the
            profile has preferred orientation).
        profile: grid and instrument.
        max_isotropic_strain: bound of the on-the-fly isotropic strain.
        wavelength: the store's wavelength, angstrom (Bragg's law for the strain).
        seed: seeds the sampler's generator.
        device: where patterns are drawn and rendered.
        max_phases: most phases per pattern (at most the pool's materials).
    """

    def __init__(
        self,
        peaks: PeakArrays,
        profile: ProfileConfig,
        max_isotropic_strain: float,
        wavelength: float,
        seed: int = 0,
        device: torch.device | str = "cpu",
        max_phases: int = 1,
    ) -> None:
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        max_phases = min(max_phases, peaks.n_materials)  # distinct materials: no more phases
        mixtures = MixtureConfig(
            n_materials=peaks.n_materials,
            max_phases=max_phases,
            batch_size=2,
            phase_draw="distinct" if max_phases > 1 else "pool",
        )
        self.mixtures = MixtureSampler(
            peaks, mixtures, profile, device=self.device, wavelength=wavelength,
            generator=self.generator,
        )  # fmt: skip
        self.profile = profile
        self.max_isotropic_strain = max_isotropic_strain
        self.wavelength = wavelength

    def reseed(self, seed: int) -> None:
        """Restart the draws from ``seed`` (one seed per epoch: any epoch can be redrawn)."""
        self.generator.manual_seed(seed)

    def _render(self, n: int) -> tuple[Tensor, dict[str, Tensor]]:
        draw = self.mixtures.draw(n)
        d = draw.d_spacing
        assert d is not None, "measured-like rendering needs the peaks' d-spacings"
        bound = self.max_isotropic_strain
        k = draw.extras["materials"].shape[1]
        strain = 2.0 * torch.rand((n, k), generator=self.generator, device=self.device) - 1.0
        d = d * (1.0 + bound * torch.gather(strain, 1, draw.phase_index))
        sine = self.wavelength / (2.0 * d.clamp(min=1e-6))
        mask = draw.mask & (sine < 1.0)
        two_theta = torch.rad2deg(2.0 * torch.asin(sine.clamp(max=1.0)))
        x = render_profiles(
            two_theta,
            draw.intensity,
            mask,
            self.profile,
            self.generator,
            self.device,
            self.wavelength,
            d_spacing=d,
            phase_index=draw.phase_index,
            eta=draw.extras["eta"],
            crystallite_size_nm=draw.extras["crystallite_size_nm"],
            instrument_draws=draw.extras,
        )
        return x, draw.extras

    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` patterns ``(n, n_points)`` in [0, 1] and each one's (first) material ``(n,)``."""
        x, extras = self._render(n)
        return x, extras["materials"][:, 0]

    def sample_mixtures(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` patterns, each one's number of phases ``(n,)`` and smallest fraction ``(n,)``.

        The fraction is of the intensity (each phase's strongest peak 100 times it).
        """
        x, extras = self._render(n)
        fractions = extras["fractions"].masked_fill(~extras["phase_mask"], 1.0)
        return x, extras["n_phases"], fractions.min(dim=1).values


__all__ = ["MeasuredLikeSampler"]
