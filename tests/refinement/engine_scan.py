"""Scans rendered by the engine (xrdpipe.patterns) with planted, known values, in counts.

The engine's own pieces, in its order: ``render_instrument`` (no noise, no background: peaks
normalised to a maximum of 1), ``instrument_background`` (Chebyshev) and ``counting_noise``
(Poisson at ``max_counts`` for the strongest point). The final min-max rescaling of
``render_profiles`` is left out so that the scan stays in counts (a measured scan's units).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure

from xrdpipe.diffraction import simulate_peaks
from xrdpipe.patterns.config import (
    CU_KA_MEAN,
    ChebyshevBackgroundConfig,
    CountingNoiseConfig,
    InstrumentConfig,
    ProfileConfig,
    TCHWidthConfig,
)
from xrdpipe.patterns.instrument import counting_noise, instrument_background, render_instrument
from xrdpipe.patterns.mixtures import mixture_intensities
from xrdpipe.structures.parse import parse_structure

COD = "/work/shared/cod-sample/cif"


def cod_structure(cod_id: str) -> Structure:
    return parse_structure(Path(COD) / f"{cod_id}.cif")


def strained(structure: Structure, edges: Sequence[float]) -> Structure:
    """A copy with cell edges a, b, c scaled by ``1 + edges[i]`` (angles kept)."""
    out = structure.copy()
    out.apply_strain(list(edges))
    return out


@dataclass
class Planted:
    """The truth of an engine scan."""

    weight_fractions: Sequence[float]
    zero_shift_deg: float = 0.0
    sample_displacement_mm: float = 0.0
    u: float = 0.004
    v: float = -0.002
    w: float = 0.003
    x: Sequence[float] = ()
    y: Sequence[float] = ()
    chebyshev: Sequence[float] = (0.05, -0.01, 0.005, 0.0)
    max_counts: float = 1e4
    goniometer_radius_mm: float = 240.0
    two_theta_range: tuple[float, float] = (10.0, 80.0)
    n_points: int = 3501
    seed: int = 0
    extra_peak: tuple[float, float, float] | None = None
    """(two_theta, height as a fraction of the strongest peak, fwhm): a Gaussian no phase has"""
    noise: bool = True
    """False: the expected counts (no Poisson draw)"""
    march_dollase: Sequence[tuple[tuple[int, int, int], float] | None] = ()
    """per phase, its March-Dollase ``(axis, r)`` (the engine's factors) or None"""
    profile: ProfileConfig = field(init=False)


def _march_dollase(structure: Structure, table, axis: tuple[int, int, int], ratio: float):
    """The engine's March-Dollase factor of each peak of ``table`` (first structure row)."""
    from xrdpipe.patterns.orientation import (
        axis_projections,
        inverse_reciprocal_norms,
        march_dollase_peak_factors,
        proper_laue_rotations,
        reciprocal_basis,
    )

    rotations = torch.tensor(proper_laue_rotations(structure))
    basis = torch.tensor(reciprocal_basis(structure))
    hkl = torch.tensor(table.hkl[0], dtype=torch.float64)
    projections = axis_projections(rotations[None], basis[None], torch.tensor([axis]))[0, 0]
    factors = march_dollase_peak_factors(
        hkl,
        inverse_reciprocal_norms(hkl[None, None], basis[None])[0, 0],
        projections,
        torch.tensor(ratio, dtype=torch.float64),
    )
    return np.where(table.mask[0], factors.numpy(), 0.0)


def engine_scan(structures: Sequence[Structure], planted: Planted) -> tuple[np.ndarray, np.ndarray]:
    """``(two_theta, counts)`` of a mixture rendered by the engine with the planted values."""
    k = len(structures)
    x = list(planted.x) or [0.03] * k
    y = list(planted.y) or [0.02] * k
    cheb = list(planted.chebyshev)
    profile = ProfileConfig(
        two_theta_min=planted.two_theta_range[0],
        two_theta_max=planted.two_theta_range[1],
        n_points=planted.n_points,
        ka_doublet=True,
        background_amplitude=(0.0, 0.0),
        instrument=InstrumentConfig(
            goniometer_radius_mm=planted.goniometer_radius_mm,
            widths=TCHWidthConfig(lorentz_x_deg=(0.0, 1.0)),
            chebyshev_background=ChebyshevBackgroundConfig(order=len(cheb) - 1),
            counting_noise=CountingNoiseConfig(max_counts=(planted.max_counts,) * 2),
        ),
    )
    planted.profile = profile
    tables = [
        simulate_peaks(s, np.zeros((3, 3)), CU_KA_MEAN, planted.two_theta_range) for s in structures
    ]
    width = max(t.max_peaks for t in tables)
    planted_md = list(planted.march_dollase) or [None] * k
    orientation = [
        _march_dollase(s, t, *md) if md is not None else 1.0
        for s, t, md in zip(structures, tables, planted_md, strict=True)
    ]

    def stack(name: str) -> torch.Tensor:
        rows = []
        for t, factor in zip(tables, orientation, strict=True):
            v = getattr(t, name)[0]
            if name in ("intensity", "intensity_raw"):
                v = v * factor
            rows.append(np.pad(v, (0, width - len(v))))
        return torch.tensor(np.stack(rows)[None], dtype=torch.float64)

    intensity = mixture_intensities(
        stack("intensity"),
        torch.tensor([list(planted.weight_fractions)], dtype=torch.float64),
        "weight",
        intensity_raw=stack("intensity_raw"),
        volume=torch.tensor([[t.volume[0] for t in tables]], dtype=torch.float64),
        density=torch.tensor([[float(np.asarray(t.density).ravel()[0]) for t in tables]]),
    )
    mask = stack("mask").bool()
    f32 = torch.float32
    draws = {
        "zero_shift_deg": torch.tensor([planted.zero_shift_deg], dtype=f32),
        "sample_displacement_mm": torch.tensor([planted.sample_displacement_mm], dtype=f32),
        "background_amplitude": torch.zeros(1),
        "background_decay_deg": torch.ones(1),
        "max_counts": torch.tensor([planted.max_counts], dtype=f32),
        "caglioti_u_deg2": torch.tensor([planted.u], dtype=f32),
        "caglioti_v_deg2": torch.tensor([planted.v], dtype=f32),
        "caglioti_w_deg2": torch.tensor([planted.w], dtype=f32),
        "lorentz_x_deg": torch.tensor([x], dtype=f32),
        "lorentz_y_deg": torch.tensor([y], dtype=f32),
        "chebyshev_coefficients": torch.tensor([cheb], dtype=f32),
    }
    phase_index = torch.arange(k).repeat_interleave(width)[None]
    generator = torch.Generator().manual_seed(planted.seed)
    peaks = render_instrument(
        stack("two_theta").reshape(1, -1).float(),
        intensity.reshape(1, -1).float(),
        mask.reshape(1, -1),
        profile,
        draws,
        generator,
        CU_KA_MEAN,
        d_spacing=stack("d_spacing").reshape(1, -1).float(),
        phase_index=phase_index,
        eta=torch.full((1, k), 0.5),
        crystallite_size_nm=torch.full((1, k), 50.0),
        noise=False,
        background=False,
    )
    grid = np.linspace(*planted.two_theta_range, planted.n_points)
    if planted.extra_peak is not None:
        centre, height, fwhm = planted.extra_peak
        extra = height * np.exp(-4 * np.log(2) * (grid - centre) ** 2 / fwhm**2)
        peaks = peaks + torch.tensor(extra[None], dtype=f32)
    expected = peaks + instrument_background(profile, draws, "cpu")
    if not planted.noise:
        scale = planted.max_counts / float(expected.max())
        return grid, expected[0].double().numpy() * scale
    counts = counting_noise(expected, draws["max_counts"], generator)
    return grid, counts[0].double().numpy()
