"""Figures of the data engine: rendered mixtures beside their single phases and sticks."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from xrdpipe.patterns.config import MixtureConfig, ProfileConfig  # noqa: E402
from xrdpipe.patterns.datasets import StorePeaks  # noqa: E402
from xrdpipe.patterns.mixtures import MixtureSampler  # noqa: E402
from xrdpipe.patterns.render import render_profiles, two_theta_grid  # noqa: E402


@dataclass(frozen=True)
class MixtureExample:
    """One drawn mixture and what it is made of.

    Attributes:
        pattern: the rendered mixture (noise and background included), ``(n_points,)``.
        phases: each present phase's rendered profile with the same shape draw and no
            noise or background, scaled by its fraction, ``(k, n_points)``.
        sticks: each phase's stick pattern: (two_theta, intensity) arrays.
        labels: one label per phase (COD id, formula, fraction).
    """

    pattern: np.ndarray
    phases: np.ndarray
    sticks: list[tuple[np.ndarray, np.ndarray]]
    labels: list[str]


def draw_examples(
    store_peaks: StorePeaks, cfg: MixtureConfig, profile: ProfileConfig, n: int, seed: int
) -> list[MixtureExample]:
    """Draw ``n`` mixtures of the store's first ``cfg.n_materials`` materials, with parts."""
    peaks = store_peaks.peaks.select_materials(torch.arange(cfg.n_materials))
    sampler = MixtureSampler(
        peaks, cfg, profile, seed=seed, device="cpu", wavelength=store_peaks.wavelength
    )
    draw = sampler.draw(n)
    generator = torch.Generator().manual_seed(seed + 1)
    patterns = render_profiles(
        draw.two_theta,
        draw.intensity,
        draw.mask,
        profile,
        generator,
        "cpu",
        store_peaks.wavelength,
        d_spacing=draw.d_spacing,
        phase_index=draw.phase_index,
        eta=draw.extras["eta"],
        crystallite_size_nm=draw.extras["crystallite_size_nm"],
    )
    examples = []
    n_slot = draw.two_theta.shape[1] // cfg.max_phases
    for i in range(n):
        k = int(draw.extras["n_phases"][i])
        phases, sticks, labels = [], [], []
        for slot in range(k):
            sl = slice(slot * n_slot, (slot + 1) * n_slot)
            mask = draw.mask[i, sl]
            tt = draw.two_theta[i, sl][mask]
            inten = draw.intensity[i, sl][mask]
            clean = render_profiles(
                tt[None],
                inten[None],
                torch.ones_like(tt[None], dtype=torch.bool),
                profile.model_copy(
                    update={"noise_fraction": (0.0, 0.0), "background_amplitude": (0.0, 0.0)}
                ),
                generator,
                "cpu",
                store_peaks.wavelength,
                d_spacing=None if draw.d_spacing is None else draw.d_spacing[i, sl][mask][None],
                eta=draw.extras["eta"][i, slot].reshape(1, 1),
                crystallite_size_nm=draw.extras["crystallite_size_nm"][i, slot].reshape(1, 1),
                noise=False,
                background=False,
            )[0]
            scale = float(draw.extras["fractions"][i, slot])
            phases.append(clean.numpy() * scale)
            sticks.append((tt.numpy(), inten.numpy()))
            m = int(draw.extras["materials"][i, slot])
            row = store_peaks.materials.iloc[m]
            name = row.get("phase_name")
            shown = name if isinstance(name, str) and name else f"{row['cod_id']} {row['formula']}"
            labels.append(f"{shown} ({scale:.2f})")
        examples.append(MixtureExample(patterns[i].numpy(), np.stack(phases), sticks, labels))
    return examples


def plot_mixtures(examples: list[MixtureExample], profile: ProfileConfig) -> Figure:
    """One row per mixture: the mixture on the left, its phases and their sticks on the right."""
    grid = two_theta_grid(profile).numpy()
    fig, axes = plt.subplots(len(examples), 2, figsize=(12, 2.6 * len(examples)), squeeze=False)
    for row, ex in zip(axes, examples, strict=True):
        left, right = row
        left.plot(grid, ex.pattern, color="black", lw=0.7)
        left.set_ylabel("intensity (a.u.)")
        left.set_title(f"mixture of {len(ex.labels)} phase(s)", fontsize=9)
        for j, (profile_j, (tt, inten), label) in enumerate(
            zip(ex.phases, ex.sticks, ex.labels, strict=True)
        ):
            color = f"C{j}"
            peak = profile_j.max() if profile_j.max() > 0 else 1.0
            base = j * 1.5
            right.plot(grid, profile_j / peak + base, color=color, lw=0.8, label=label)
            # sticks hang below their profile's baseline so both stay visible
            right.vlines(
                tt, base - 0.3 * inten / inten.max(), base, color=color, lw=0.8, gid=f"sticks-{j}"
            )
        right.legend(fontsize=7, loc="upper right")
        right.set_title("phases (profile, scaled by fraction) and sticks", fontsize=9)
        right.set_yticks([])
    for ax in axes[-1]:
        ax.set_xlabel("2θ (degrees)")
    fig.tight_layout()
    return fig
