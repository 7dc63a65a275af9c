"""Multi-phase mixtures drawn on the fly (paper 002), seeded datasets and fixed test sets.

Draw rules, per mixture (all mixtures of a batch at once, no Python loop over samples):

1. Number of phases ``k`` uniform in ``1..K`` (``MixtureConfig.max_phases``).
2. ``k`` distinct materials, uniformly among the ``N`` (first ``k`` of a random permutation).
3. Fractions from a flat Dirichlet over the ``k`` chosen phases (normalised Exp(1) draws):
   uniform on the simplex; the other ``N - k`` entries of the target are 0.
4. One strain condition per phase, uniform among the strain conditions given to the sampler
   (the training split for training, the test strains for fixed test sets).
5. Each phase's peak list is scaled by its fraction (``intensity`` mode, paper 002: the max-100
   intensities times the fraction) or, in ``weight`` mode, by
   ``w / (rho V^2)`` times ``intensity_raw`` (= ``|F|^2 m LP``), i.e.
   ``I_hkl,a ~ (w_a / rho_a) |F|^2 m LP / V_a^2`` (common absorption, no microabsorption).
6. The ``k`` peak lists are concatenated into one padded ``(B, K * P)`` list with a phase
   index, so one render call handles the batch; each (sample, phase) gets its own ``eta``
   and crystallite size; then normalisation, noise and background (see ``render``).
7. With ``ProfileConfig.instrument`` (after every draw above, so the draws of 1-6 are those
   of the plain engine): the instrument's draws (:func:`~xrdpipe.patterns.instrument.
   draw_instrument`), and with preferred orientation each present phase's peaks times
   their family's March-Dollase factor (:mod:`~xrdpipe.patterns.orientation`); rendering
   goes through :func:`~xrdpipe.patterns.instrument.render_instrument`.
8. With ``MixtureConfig.particle_radius_um`` (``weight`` mode, after every draw above): a
   radius per mixture and each phase's intensity times Brindley's ``tau``
   (:mod:`~xrdpipe.patterns.microabsorption`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from xrdpipe.errors import ConfigError
from xrdpipe.patterns.config import (
    CU_KA_MEAN,
    FractionMode,
    MixtureConfig,
    ProfileConfig,
    fraction_mode_name,
)
from xrdpipe.patterns.instrument import draw_instrument
from xrdpipe.patterns.microabsorption import absorption_table
from xrdpipe.patterns.orientation import orientation_lookup, phase_march_dollase
from xrdpipe.patterns.render import render_profiles

TRAIN_FRACTION = 0.6
"""Paper 002's training share of the training strain conditions (the rest validates)."""

_PER_PEAK = ("two_theta", "intensity", "peak_mask", "intensity_raw", "d_spacing")


def _tensor(value: Any, dtype: torch.dtype, device: torch.device) -> Tensor | None:
    if value is None:
        return None
    if isinstance(value, Tensor):
        return value.to(device=device, dtype=dtype)
    return torch.tensor(np.asarray(value)).to(device=device, dtype=dtype)


@dataclass(frozen=True)
class PeakArrays:
    """Padded single-phase peak lists of ``M`` materials under ``S`` strain conditions.

    Attributes:
        two_theta: ``(M, S, P)`` degrees.
        intensity: ``(M, S, P)`` integrated intensities scaled to a maximum of 100.
        peak_mask: ``(M, S, P)`` True for real peaks (padding at the end).
        intensity_raw: ``(M, S, P)`` unscaled ``|F|^2 m LP`` (needed for ``weight`` mode).
        d_spacing: ``(M, S, P)`` angstrom (needed for the K-alpha doublet).
        volume: ``(M, S)`` cell volume, angstrom^3 (``weight`` mode).
        density: ``(M, S)`` g/cm^3 (``weight`` mode).
        hkl: ``(M, S, P, 3)`` each peak's representative Miller indices (preferred
            orientation).
        rotations: ``(M, L, 3, 3)`` each material's proper Laue-group rotations, Cartesian,
            repeated to a common length L (preferred orientation; see
            :mod:`xrdpipe.patterns.orientation`).
        reciprocal_basis: ``(M, 3, 3)`` reciprocal basis vectors as columns, 1/angstrom.
        linear_absorption: ``(M, S)`` linear absorption coefficient ``mu``, 1/cm
            (Brindley microabsorption; :mod:`xrdpipe.patterns.microabsorption`).
        names: the ``M`` materials' names (for messages), or None.
    """

    two_theta: Tensor
    intensity: Tensor
    peak_mask: Tensor
    intensity_raw: Tensor | None = None
    d_spacing: Tensor | None = None
    volume: Tensor | None = None
    density: Tensor | None = None
    hkl: Tensor | None = None
    rotations: Tensor | None = None
    reciprocal_basis: Tensor | None = None
    linear_absorption: Tensor | None = None
    names: tuple[str, ...] | None = None

    @classmethod
    def from_arrays(
        cls,
        two_theta: Any,
        intensity: Any,
        peak_mask: Any,
        intensity_raw: Any = None,
        d_spacing: Any = None,
        volume: Any = None,
        density: Any = None,
        device: torch.device | str = "cpu",
        *,
        hkl: Any = None,
        rotations: Any = None,
        reciprocal_basis: Any = None,
        linear_absorption: Any = None,
        names: Any = None,
    ) -> PeakArrays:
        """Tensors (float32, bool mask) on ``device`` from numpy arrays or tensors."""
        dev = torch.device(device)
        tt = _tensor(two_theta, torch.float32, dev)
        assert tt is not None and tt.dim() == 3, "two_theta must be (M, S, P)"
        arrays = cls(
            two_theta=tt,
            intensity=_tensor(intensity, torch.float32, dev),  # type: ignore[arg-type]
            peak_mask=_tensor(peak_mask, torch.bool, dev),  # type: ignore[arg-type]
            intensity_raw=_tensor(intensity_raw, torch.float32, dev),
            d_spacing=_tensor(d_spacing, torch.float32, dev),
            volume=_tensor(volume, torch.float32, dev),
            density=_tensor(density, torch.float32, dev),
            hkl=_tensor(hkl, torch.float32, dev),
            rotations=_tensor(rotations, torch.float32, dev),
            reciprocal_basis=_tensor(reciprocal_basis, torch.float32, dev),
            linear_absorption=_tensor(linear_absorption, torch.float64, dev),
            names=None if names is None else tuple(str(n) for n in names),
        )
        m, s, p = tt.shape
        expected = {name: (m, s, p) for name in _PER_PEAK}
        expected.update({"volume": (m, s), "density": (m, s), "linear_absorption": (m, s)})
        expected["hkl"] = (m, s, p, 3)
        expected["reciprocal_basis"] = (m, 3, 3)
        if arrays.rotations is not None:
            expected["rotations"] = (m, arrays.rotations.shape[1], 3, 3)
        if arrays.names is not None and len(arrays.names) != m:
            raise ValueError(f"{len(arrays.names)} names for {m} materials")
        for name, shape in expected.items():
            value = getattr(arrays, name)
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(value.shape)}, expected {shape}")
        return arrays.trimmed()

    @property
    def n_materials(self) -> int:
        """M."""
        return int(self.two_theta.shape[0])

    @property
    def n_strains(self) -> int:
        """S."""
        return int(self.two_theta.shape[1])

    @property
    def max_peaks(self) -> int:
        """P (after trimming: the longest peak list)."""
        return int(self.two_theta.shape[2])

    @property
    def has_orientation(self) -> bool:
        """Whether the arrays carry what preferred orientation needs (hkl, rotations, B)."""
        return all(v is not None for v in (self.hkl, self.rotations, self.reciprocal_basis))

    def _map(self, fn: Any) -> PeakArrays:
        """Applies ``fn(value, axes)`` to every array; ``axes`` names its leading axes."""
        updates = {}
        for names, axes in (
            ((*_PER_PEAK, "hkl"), "msp"),
            (("volume", "density", "linear_absorption"), "ms"),
            (("rotations", "reciprocal_basis"), "m"),
        ):
            for name in names:
                value = getattr(self, name)
                updates[name] = None if value is None else fn(value, axes)
        return replace(self, **updates)

    def trimmed(self) -> PeakArrays:
        """The same peaks with padding columns that no list uses removed."""
        used = int(self.peak_mask.sum(dim=-1).max()) if self.peak_mask.numel() else 0
        used = max(used, 1)
        if used == self.max_peaks:
            return self
        return self._map(lambda v, axes: v[:, :, :used] if axes == "msp" else v)

    def select_strains(self, indices: Any) -> PeakArrays:
        """Only the strain conditions ``indices`` (e.g. the training split)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long, device=self.two_theta.device)
        return self._map(lambda v, axes: v[:, idx] if "s" in axes else v)

    def select_materials(self, indices: Any) -> PeakArrays:
        """Only the materials ``indices`` (e.g. the first N of a subset)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long, device=self.two_theta.device)
        names = None if self.names is None else tuple(self.names[int(i)] for i in idx)
        return replace(self._map(lambda v, axes: v[idx]), names=names)

    def to(self, device: torch.device | str) -> PeakArrays:
        """A copy on ``device``."""
        return self._map(lambda v, axes: v.to(device))


def mixture_intensities(
    intensity: Tensor,
    fractions: Tensor,
    mode: FractionMode = "intensity",
    *,
    intensity_raw: Tensor | None = None,
    volume: Tensor | None = None,
    density: Tensor | None = None,
) -> Tensor:
    """Stick intensities of each phase in a mixture.

    Args:
        intensity: ``(..., K, P)`` max-100 intensities (``intensity`` mode).
        fractions: ``(..., K)`` phase fractions (0 for absent phases).
        mode: ``intensity``: ``fraction * intensity`` (paper 002's intensity-type
            fraction); ``weight``: ``(w / rho) * intensity_raw / V^2`` (relative; the
            pattern is normalised later). ``volume`` (deprecated) is ``intensity``.
        intensity_raw: ``(..., K, P)`` ``|F|^2 m LP``, for ``weight``.
        volume: ``(..., K)`` cell volume, angstrom^3, for ``weight``.
        density: ``(..., K)`` g/cm^3, for ``weight``.

    Returns:
        ``(..., K, P)`` float32 intensities.
    """
    mode = fraction_mode_name(mode)
    if mode == "intensity":
        return intensity * fractions.unsqueeze(-1)
    if mode == "weight":
        if intensity_raw is None or volume is None or density is None:
            raise ConfigError(
                "fraction_mode 'weight' needs intensity_raw, volume and density arrays"
            )
        scale = fractions.double() / (density.double() * volume.double().square())
        return (intensity_raw.double() * scale.unsqueeze(-1)).float()
    raise ConfigError(f"fraction_mode {mode!r} is not one of ['intensity', 'weight']")


@dataclass(frozen=True)
class MixtureDraw:
    """One batch of drawn mixtures before rendering (peak lists and labels).

    Attributes:
        two_theta: ``(B, K * P)`` concatenated peak positions, degrees.
        intensity: ``(B, K * P)`` fraction-scaled intensities.
        mask: ``(B, K * P)`` real peaks of present phases.
        d_spacing: ``(B, K * P)`` angstrom, or None.
        phase_index: ``(B, K * P)`` slot 0..K-1 of each peak.
        phase_fractions: ``(B, N)`` target fractions (sum 1).
        extras: per-slot draws: ``n_phases (B,)``, ``materials``, ``strains``, ``fractions``,
            ``eta``, ``crystallite_size_nm`` ``(B, K)`` and ``phase_mask`` ``(B, K)``; with
            ``ProfileConfig.instrument``, also every instrument draw
            (:func:`~xrdpipe.patterns.instrument.draw_instrument`: zero shift, displacement,
            widths, March-Dollase ratio and axis, backgrounds, noise level).
    """

    two_theta: Tensor
    intensity: Tensor
    mask: Tensor
    d_spacing: Tensor | None
    phase_index: Tensor
    phase_fractions: Tensor
    extras: dict[str, Tensor]


class MixtureSampler:
    """Draws batches of multi-phase patterns and their phase-fraction targets.

    Args:
        peaks: single-phase peak lists of the ``N`` materials (only the strains to draw from).
        cfg: N, K, batch size, fraction mode.
        profile: peak shape, noise and background.
        seed: seeds the sampler's own generator (ignored when ``generator`` is given).
        device: where everything is drawn and rendered (default: CUDA if present, else CPU).
        wavelength: angstrom.
        generator: use this generator instead of one seeded from ``seed``.
    """

    def __init__(
        self,
        peaks: PeakArrays,
        cfg: MixtureConfig,
        profile: ProfileConfig | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        wavelength: float = CU_KA_MEAN,
        generator: torch.Generator | None = None,
    ) -> None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if peaks.n_materials != cfg.n_materials:
            raise ConfigError(
                f"peak arrays hold {peaks.n_materials} materials but n_materials is "
                f"{cfg.n_materials}; select the materials first (PeakArrays.select_materials)"
            )
        if cfg.fraction_mode == "weight" and (
            peaks.intensity_raw is None or peaks.volume is None or peaks.density is None
        ):
            raise ConfigError(
                "fraction_mode 'weight' needs intensity_raw, volume and density in the arrays"
            )
        self.peaks = peaks.to(self.device)
        self.cfg = cfg
        self.profile = profile or ProfileConfig()
        self.wavelength = wavelength
        if generator is None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        self.generator = generator
        self._orientation = self._orientation_tables()
        self._absorption = absorption_table(self.peaks, cfg.particle_radius_range, self.device)

    def _orientation_tables(self) -> tuple[Tensor, Tensor] | None:
        """``1/|B h|`` per peak and ``B^T Q_g^T a`` per (material, axis), when needed."""
        instrument = self.profile.instrument
        if instrument is None or instrument.preferred_orientation is None:
            return None
        pk = self.peaks
        if not pk.has_orientation:
            raise ConfigError(
                "preferred_orientation needs hkl, rotations and reciprocal_basis in the peak "
                "arrays: load them with load_peaks(..., orientation=True)"
            )
        return orientation_lookup(
            pk.hkl,  # type: ignore[arg-type]
            pk.rotations,  # type: ignore[arg-type]
            pk.reciprocal_basis,  # type: ignore[arg-type]
            instrument.preferred_orientation.max_axis_index,
        )

    def _uniform(self, bounds: tuple[float, float], shape: tuple[int, ...]) -> Tensor:
        lo, hi = bounds
        return lo + (hi - lo) * torch.rand(shape, generator=self.generator, device=self.device)

    def draw(self, batch_size: int | None = None) -> MixtureDraw:
        """Draw phases, strains, fractions and shapes; build the concatenated peak lists."""
        n_samples = batch_size or self.cfg.batch_size
        n_max, k_max = self.cfg.n_materials, self.cfg.max_phases
        g, dev, pk = self.generator, self.device, self.peaks
        n_phases = torch.randint(1, k_max + 1, (n_samples,), generator=g, device=dev)
        if self.cfg.phase_draw == "distinct":
            materials = torch.rand(n_samples, n_max, generator=g, device=dev).argsort(dim=1)
            materials = materials[:, :k_max]
        else:
            materials = torch.randint(0, n_max, (n_samples, k_max), generator=g, device=dev)
        phase_mask = torch.arange(k_max, device=dev) < n_phases.unsqueeze(1)
        exp_draws = -torch.log1p(-torch.rand(n_samples, k_max, generator=g, device=dev))
        exp_draws = exp_draws * phase_mask
        fractions = exp_draws / exp_draws.sum(dim=1, keepdim=True)
        strains = torch.randint(0, pk.n_strains, (n_samples, k_max), generator=g, device=dev)
        eta = self._uniform(self.profile.eta_range, (n_samples, k_max))
        size = self._uniform(self.profile.crystallite_size_nm, (n_samples, k_max))

        def take(values: Tensor | None) -> Tensor | None:
            return None if values is None else values[materials, strains]

        intensity = mixture_intensities(
            take(pk.intensity),  # type: ignore[arg-type]
            fractions,
            self.cfg.fraction_mode,
            intensity_raw=take(pk.intensity_raw),
            volume=take(pk.volume),
            density=take(pk.density),
        )
        extras = {
            "n_phases": n_phases,
            "materials": materials,
            "strains": strains,
            "fractions": fractions,
            "phase_mask": phase_mask,
            "eta": eta,
            "crystallite_size_nm": size,
        }
        if self.profile.instrument is not None:
            extras.update(draw_instrument(self.profile, n_samples, k_max, g, dev))
        if self._orientation is not None:
            intensity = intensity * phase_march_dollase(
                pk.hkl,  # type: ignore[arg-type]
                self._orientation,
                materials,
                strains,
                phase_mask,
                extras["march_dollase_axis"],
                extras["march_dollase_ratio"],
            )
        if self._absorption is not None:  # last: the plain engine's draws are unchanged
            radius, tau = self._absorption.draw(
                fractions,
                take(pk.linear_absorption),
                take(pk.density),
                g,  # type: ignore[arg-type]
            )
            intensity = (intensity.double() * tau.unsqueeze(-1)).float()
            extras.update(particle_radius_um=radius, brindley_tau=tau)
        mask = take(pk.peak_mask) & phase_mask.unsqueeze(2)  # type: ignore[operator]
        d_spacing = take(pk.d_spacing)
        n_peaks = pk.max_peaks
        phase_index = torch.arange(k_max, device=dev).repeat_interleave(n_peaks)
        phase_index = phase_index.unsqueeze(0).expand(n_samples, -1)
        target = torch.zeros(n_samples, n_max, device=dev).scatter_add_(1, materials, fractions)
        return MixtureDraw(
            two_theta=take(pk.two_theta).reshape(n_samples, -1),  # type: ignore[union-attr]
            intensity=intensity.reshape(n_samples, -1),
            mask=mask.reshape(n_samples, -1),
            d_spacing=None if d_spacing is None else d_spacing.reshape(n_samples, -1),
            phase_index=phase_index,
            phase_fractions=target,
            extras=extras,
        )

    def sample(self, batch_size: int | None = None) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """One batch of rendered mixtures.

        Args:
            batch_size: mixtures (default ``cfg.batch_size``).

        Returns:
            ``patterns (B, n_points)`` float32 in [0, 1], ``phase_fractions (B, N)`` float32
            (sum 1, >= 0), and ``extras`` (see :class:`MixtureDraw`).
        """
        draw = self.draw(batch_size)
        patterns = render_profiles(
            draw.two_theta,
            draw.intensity,
            draw.mask,
            self.profile,
            self.generator,
            self.device,
            self.wavelength,
            d_spacing=draw.d_spacing,
            phase_index=draw.phase_index,
            eta=draw.extras["eta"],
            crystallite_size_nm=draw.extras["crystallite_size_nm"],
            instrument_draws=draw.extras if self.profile.instrument is not None else None,
        )
        return patterns, draw.phase_fractions, draw.extras


def worker_seed(seed: int, worker_id: int) -> int:
    """A 63-bit seed for one DataLoader worker, derived from ``(seed, worker_id)``."""
    state = np.random.SeedSequence([seed, worker_id]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


class MixtureDataset(IterableDataset):
    """Endless (or ``n_batches`` long) stream of mixture batches, deterministic from a seed.

    Use with ``DataLoader(dataset, batch_size=None, num_workers=W)``: each worker seeds its
    own generator from ``(seed, worker_id)``, so workers give distinct batches and a rerun
    with the same seed and worker count gives the same stream. With workers keep
    ``device="cpu"``; for CUDA rendering use ``num_workers=0`` and ``device="cuda"``.

    Args:
        peaks: the peak lists to draw from (training strains).
        cfg: mixture settings.
        profile: peak shape, noise and background.
        seed: base seed.
        device: rendering device (default CPU).
        wavelength: angstrom.
        n_batches: batches per worker (None: endless).
    """

    def __init__(
        self,
        peaks: PeakArrays,
        cfg: MixtureConfig,
        profile: ProfileConfig | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        wavelength: float = CU_KA_MEAN,
        n_batches: int | None = None,
    ) -> None:
        super().__init__()
        self.peaks = peaks
        self.cfg = cfg
        self.profile = profile or ProfileConfig()
        self.seed = seed
        self.device = device
        self.wavelength = wavelength
        self.n_batches = n_batches

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        info = get_worker_info()
        worker_id = info.id if info is not None else 0
        sampler = MixtureSampler(
            self.peaks,
            self.cfg,
            self.profile,
            seed=worker_seed(self.seed, worker_id),
            device=self.device,
            wavelength=self.wavelength,
        )
        produced = 0
        while self.n_batches is None or produced < self.n_batches:
            patterns, fractions, _ = sampler.sample()
            produced += 1
            yield patterns, fractions


def mixture_loader(
    dataset: MixtureDataset, target_device: torch.device | str, num_workers: int = 0
) -> DataLoader:
    """A DataLoader over a :class:`MixtureDataset` for training on ``target_device``.

    CPU-rendered batches bound for CUDA come through pinned memory (faster, asynchronous
    host-to-device copies); batches rendered on CUDA need no workers.
    """
    cuda_target = torch.device(target_device).type == "cuda"
    rendered_on_cuda = torch.device(dataset.device).type == "cuda"
    workers = 0 if rendered_on_cuda else num_workers
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        pin_memory=cuda_target and not rendered_on_cuda,
        persistent_workers=workers > 0,
        # flows run in processes with threads (Prefect, Dask, zarr): fork is unsafe there
        multiprocessing_context="forkserver" if workers > 0 else None,
    )


def tensors_sha256(*tensors: Tensor) -> str:
    """SHA-256 of the tensors' shapes, dtypes and bytes (CPU, contiguous)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        cpu = tensor.detach().cpu().contiguous()
        digest.update(f"{tuple(cpu.shape)}{cpu.dtype}".encode())
        digest.update(cpu.numpy().tobytes())
    return digest.hexdigest()


def make_fixed_mixture_set(
    peaks: PeakArrays,
    cfg: MixtureConfig,
    profile: ProfileConfig | None = None,
    n: int = 10000,
    seed: int = 0,
    device: torch.device | str = "cpu",
    wavelength: float = CU_KA_MEAN,
) -> tuple[Tensor, Tensor, str]:
    """A fixed, seeded set of mixtures (test or validation), drawn in ``cfg.batch_size`` steps.

    Args:
        peaks: peak lists restricted to the held-out strains (test or validation).
        cfg: mixture settings.
        profile: peak shape, noise and background.
        n: number of mixtures.
        seed: seed of the set.
        device: rendering device; the hash is reproducible per device type.
        wavelength: angstrom.

    Returns:
        ``patterns (n, n_points)``, ``phase_fractions (n, N)`` (on ``device``) and the
        SHA-256 of both.
    """
    if n < 1:
        raise ConfigError(f"n {n} must be at least 1")
    sampler = MixtureSampler(peaks, cfg, profile, seed=seed, device=device, wavelength=wavelength)
    patterns, fractions = [], []
    for start in range(0, n, cfg.batch_size):
        batch_patterns, batch_fractions, _ = sampler.sample(min(cfg.batch_size, n - start))
        patterns.append(batch_patterns)
        fractions.append(batch_fractions)
    all_patterns = torch.cat(patterns)
    all_fractions = torch.cat(fractions)
    return all_patterns, all_fractions, tensors_sha256(all_patterns, all_fractions)


def split_train_validation(
    n_train_strains: int, fraction: float = TRAIN_FRACTION, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Paper 002's 60/40 split of the training strain conditions (same for every material).

    Args:
        n_train_strains: strain conditions available for training (paper: 500).
        fraction: share that trains (paper: 0.6); the rest validates.
        seed: seed of the random permutation.

    Returns:
        Sorted strain indices ``(train, validation)``, both non-empty.
    """
    if n_train_strains < 2:
        raise ConfigError(f"n_train_strains {n_train_strains} must be at least 2 to split")
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"fraction {fraction} must be strictly between 0 and 1")
    n_train = min(max(int(math.floor(fraction * n_train_strains + 0.5)), 1), n_train_strains - 1)
    order = np.random.default_rng(seed).permutation(n_train_strains)
    return np.sort(order[:n_train]), np.sort(order[n_train:])
