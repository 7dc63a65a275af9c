"""Frozen configuration of the on-the-fly data engine: peak shapes, mixtures, augmentations.

Each model is a frozen pydantic model with ``extra="forbid"``: an unknown key or a bad value
fails at construction with a :class:`pydantic.ValidationError` that names the field. Ranges are
``(low, high)`` tuples drawn uniformly; ``low == high`` fixes the value.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

CU_KA_MEAN = 1.54184
"""Cu K-alpha weighted mean wavelength, angstrom (pymatgen's ``CuKa``)."""
CU_KA1 = 1.54056
"""Cu K-alpha1 wavelength, angstrom."""
CU_KA2 = 1.54439
"""Cu K-alpha2 wavelength, angstrom."""
KA2_KA1_RATIO = 0.5
"""Intensity ratio I(K-alpha2) / I(K-alpha1)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _range_check(lower: float, upper: float) -> Any:
    def check(value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not lower <= lo <= hi <= upper:
            raise ValueError(f"range {value!r} must satisfy {lower} <= low <= high <= {upper}")
        return value

    return check


def Range(lower: float, upper: float) -> Any:  # noqa: N802 - a type factory
    """The type of a ``(low, high)`` range with ``lower <= low <= high <= upper``.

    A value outside fails validation with a message naming the field (pydantic's location)
    and the allowed bounds.
    """
    return Annotated[tuple[float, float], AfterValidator(_range_check(lower, upper))]


def _log_range_check(value: tuple[float, float]) -> tuple[float, float]:
    lo, hi = value
    if not 0.0 < lo <= hi:
        raise ValueError(f"range {value!r} must satisfy 0 < low <= high")
    return value


LogRange = Annotated[tuple[float, float], AfterValidator(_log_range_check)]
"""A ``(low, high)`` range drawn log-uniformly: ``0 < low <= high``."""
NonNegative = Range(0.0, 10.0)
"""A range of non-negative values up to 10 (widths, heights, fractions of the maximum)."""


class TCHWidthConfig(_Frozen):
    """Thompson-Cox-Hastings pseudo-Voigt widths (replace the Scherrer width and drawn eta).

    Gaussian FWHM ``G^2 = U tan^2(theta) + V tan(theta) + W`` (Caglioti), Lorentzian FWHM
    ``L = X / cos(theta) + Y tan(theta)`` (size and strain), both in degrees two-theta; the
    total FWHM and the Lorentzian fraction eta follow from TCH's formulas (see
    ``docs/patterns.md``), eta is not drawn.

    Attributes:
        caglioti_u_deg2: U range, deg^2, drawn per sample (an instrument term).
        caglioti_v_deg2: V range, deg^2, drawn per sample (usually <= 0).
        caglioti_w_deg2: W range, deg^2, drawn per sample (> 0: the width at theta = 0).
        lorentz_x_deg: X range, degrees, drawn per (sample, phase); ``None``: the Scherrer
            term of the phase's drawn crystallite size, ``X = K lambda / L`` (radians, in
            degrees).
        lorentz_y_deg: Y range, degrees, drawn per (sample, phase) (microstrain).
    """

    caglioti_u_deg2: NonNegative = (0.0, 0.01)
    caglioti_v_deg2: Range(-10.0, 10.0) = (-0.005, 0.0)
    caglioti_w_deg2: Range(1e-8, 10.0) = (0.001, 0.005)
    lorentz_x_deg: NonNegative | None = None
    lorentz_y_deg: NonNegative = (0.0, 0.05)


class MarchDollaseConfig(_Frozen):
    """Preferred orientation per phase: March-Dollase with a random low-index axis.

    Attributes:
        ratio: March-Dollase r range, drawn per (sample, phase); r < 1: plates whose normal
            (the axis) lies along the scattering vector, so reflections near the axis grow;
            r > 1: needles; r = 1: random powder.
        max_axis_index: the axis is a reciprocal-lattice direction ``[h k l]`` with
            ``max |index| <= max_axis_index`` (1: the 13 directions 100, 110, 111 and
            their permutations and signs, one of each +- pair), drawn uniformly per phase.
    """

    ratio: Range(0.05, 20.0) = (0.6, 1.0)
    max_axis_index: int = Field(default=1, ge=1, le=3)


class ChebyshevBackgroundConfig(_Frozen):
    """A Chebyshev polynomial background, drawn per sample (fractions of the peak maximum).

    ``b(x) = sum_k c_k T_k(x)`` with ``x = 2 (2theta - 2theta_min) / (2theta_max -
    2theta_min) - 1`` in [-1, 1]; the sum is clipped at 0.

    Attributes:
        order: highest polynomial order (0..6).
        constant: range of ``c_0``.
        coefficient: range of every ``c_k``, ``k >= 1``.
    """

    order: int = Field(default=3, ge=0, le=6)
    constant: NonNegative = (0.0, 0.2)
    coefficient: Range(-10.0, 10.0) = (-0.05, 0.05)


class AmorphousHumpConfig(_Frozen):
    """A broad pseudo-Voigt hump (amorphous content, glass holder), drawn per sample.

    Attributes:
        height: peak height range, fraction of the (crystalline) peak maximum.
        center_deg: position range, degrees two-theta.
        fwhm_deg: FWHM range, degrees.
        eta: Lorentzian fraction of its pseudo-Voigt shape (0: Gaussian).
    """

    height: NonNegative = (0.0, 0.2)
    center_deg: Range(0.0, 180.0) = (20.0, 30.0)
    fwhm_deg: Range(1e-3, 180.0) = (5.0, 15.0)
    eta: float = Field(default=0.0, ge=0.0, le=1.0)


class CountingNoiseConfig(_Frozen):
    """Poisson counting noise (replaces the Gaussian noise of ``noise_fraction``).

    Attributes:
        max_counts: range of the counts at the strongest point of the pattern (peaks plus
            background), drawn log-uniformly per sample.
    """

    max_counts: LogRange = (1e3, 1e5)


class InstrumentConfig(_Frozen):
    """A Bragg-Brentano diffractometer and sample effects, nested in :class:`ProfileConfig`.

    The lines (``ka_doublet``, ``ka1``, ``ka2``, ``ka2_ratio``), the grid (range, points) and
    ``zero_shift_deg`` stay on :class:`ProfileConfig`; this holds the rest. Every effect is
    neutral by default (``InstrumentConfig()`` only switches peak centres to their exact,
    unrounded positions), each one on by its own field. Physics and sign conventions:
    ``docs/patterns.md`` and :mod:`xrdpipe.patterns.physics`.

    Attributes:
        goniometer_radius_mm: R, goniometer radius, mm (for the sample displacement).
        divergence_slit: ``fixed`` (what the store's intensities assume) or ``automatic``
            (constant irradiated length: intensities times ``sin(theta)``).
        monochromator_two_theta_deg: the monochromator's 2theta_m (graphite 002 at Cu K-alpha:
            26.57); ``None``: no monochromator (unpolarised beam, the store's factor).
        sample_displacement_mm: s range, mm, drawn per sample; positive s (sample surface
            above the focusing circle) moves peaks to lower two-theta.
        widths: TCH pseudo-Voigt widths; ``None``: Scherrer width and drawn eta.
        preferred_orientation: March-Dollase per phase; ``None``: random powder.
        chebyshev_background: Chebyshev background; ``None``: none.
        amorphous_hump: broad hump; ``None``: none.
        counting_noise: Poisson noise; ``None``: the Gaussian ``noise_fraction``.
    """

    goniometer_radius_mm: float = Field(default=240.0, gt=0.0)
    divergence_slit: Literal["fixed", "automatic"] = "fixed"
    monochromator_two_theta_deg: float | None = Field(default=None, ge=0.0, lt=180.0)
    sample_displacement_mm: Range(-5.0, 5.0) = (0.0, 0.0)
    widths: TCHWidthConfig | None = None
    preferred_orientation: MarchDollaseConfig | None = None
    chebyshev_background: ChebyshevBackgroundConfig | None = None
    amorphous_hump: AmorphousHumpConfig | None = None
    counting_noise: CountingNoiseConfig | None = None


def grid_points(two_theta_min: float, two_theta_max: float, step_deg: float) -> int:
    """``n_points`` of a grid from its range and step (a scan's ``start, stop, step``).

    Raises:
        ValueError: the step is not positive or does not divide the range (to 1e-6 of it).
    """
    if step_deg <= 0.0:
        raise ValueError(f"step_deg {step_deg!r} must be positive")
    intervals = (two_theta_max - two_theta_min) / step_deg
    if intervals < 1 or abs(intervals - round(intervals)) > 1e-6 * max(intervals, 1.0):
        raise ValueError(
            f"step_deg {step_deg!r} must divide the range [{two_theta_min}, {two_theta_max}] "
            "into a whole number (>= 1) of steps"
        )
    return int(round(intervals)) + 1


class ProfileConfig(_Frozen):
    """How a peak list becomes a profile on a two-theta grid (paper 002).

    Attributes:
        two_theta_min: first grid point, degrees.
        two_theta_max: last grid point, degrees.
        n_points: grid points (uniform in two-theta, both ends included).
        eta_range: pseudo-Voigt Lorentzian fraction, drawn per (sample, phase).
        crystallite_size_nm: Scherrer crystallite size L, drawn per (sample, phase), nm.
        scherrer_k: Scherrer shape factor K.
        noise_fraction: Gaussian noise standard deviation as a fraction of the maximum,
            drawn per sample.
        background_amplitude: exponential background height at ``two_theta_min``, as a
            fraction of the (normalised) maximum, drawn per sample.
        background_decay_deg: decay length of the exponential background, degrees, per sample.
        ka_doublet: render each peak as K-alpha1 + K-alpha2 at the positions given by its
            d-spacing (needs ``d_spacing``); off: one peak at the given two-theta.
        ka1: K-alpha1 wavelength, angstrom.
        ka2: K-alpha2 wavelength, angstrom.
        ka2_ratio: I(K-alpha2) / I(K-alpha1); the pair keeps the stick's total area.
        zero_shift_deg: instrument zero shift added to every peak of a sample, degrees.
        clean_eta: fixed pseudo-Voigt mixing of :func:`render_clean` (stored profiles).
        clean_crystallite_size_nm: fixed crystallite size of :func:`render_clean`, nm.
        instrument: diffractometer and sample effects (:class:`InstrumentConfig`); ``None``
            (default): paper 002's engine exactly (rounded peak centres, no instrument).
    """

    two_theta_min: float = Field(default=10.0, ge=0.0, lt=180.0)
    two_theta_max: float = Field(default=80.0, gt=0.0, lt=180.0)
    n_points: int = Field(default=4501, ge=16)
    eta_range: Range(0.0, 1.0) = (0.1, 0.9)
    crystallite_size_nm: Range(1e-6, float("inf")) = (10.0, 100.0)
    scherrer_k: float = Field(default=0.9, gt=0.0)
    noise_fraction: NonNegative = (0.03, 0.07)
    background_amplitude: NonNegative = (0.0, 0.3)
    background_decay_deg: Range(1e-6, float("inf")) = (5.0, 30.0)
    ka_doublet: bool = False
    ka1: float = Field(default=CU_KA1, gt=0.0)
    ka2: float = Field(default=CU_KA2, gt=0.0)
    ka2_ratio: float = Field(default=KA2_KA1_RATIO, ge=0.0)
    zero_shift_deg: Range(-5.0, 5.0) = (0.0, 0.0)
    clean_eta: float = Field(default=0.5, ge=0.0, le=1.0)
    clean_crystallite_size_nm: float = Field(default=50.0, gt=0.0)
    instrument: InstrumentConfig | None = None

    @model_serializer(mode="wrap")
    def _without_absent_instrument(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Dumps without ``instrument`` when it is None.

        So configs without one, and the fingerprints, fixed-set keys and checkpoints made
        from them, read exactly as before the instrument model existed.
        """
        data = handler(self)
        if self.instrument is None and isinstance(data, dict):
            data.pop("instrument", None)
        return data

    @model_validator(mode="after")
    def _grid(self) -> ProfileConfig:
        if not self.two_theta_min < self.two_theta_max:
            raise ValueError(
                f"two_theta_min {self.two_theta_min} must be below two_theta_max "
                f"{self.two_theta_max}"
            )
        return self

    @property
    def step_deg(self) -> float:
        """Grid spacing, degrees."""
        return (self.two_theta_max - self.two_theta_min) / (self.n_points - 1)

    @property
    def needs_orientation(self) -> bool:
        """Whether rendering needs Miller indices and point groups (March-Dollase is on).

        Then load the peaks with ``load_peaks(..., orientation=True)``.
        """
        return self.instrument is not None and self.instrument.preferred_orientation is not None


FRACTION_MODE_ALIASES = {"volume": "intensity"}
"""Former names of fraction modes, accepted with a :class:`DeprecationWarning`."""


def fraction_mode_name(mode: Any) -> Any:
    """``mode`` under its current name: ``volume`` (deprecated) is ``intensity``.

    The mode named ``volume`` never scaled volumes: it multiplies each phase's max-100 peak
    list by its fraction, paper 002's intensity-type fraction.
    """
    if isinstance(mode, str) and mode in FRACTION_MODE_ALIASES:
        new = FRACTION_MODE_ALIASES[mode]
        warnings.warn(
            f"fraction_mode {mode!r} is deprecated: it is named {new!r} (each phase's max-100 "
            "peak list times its fraction); write fraction_mode: " + new,
            DeprecationWarning,
            stacklevel=3,
        )
        return new
    return mode


FractionMode = Annotated[Literal["intensity", "weight"], BeforeValidator(fraction_mode_name)]
"""How a mixture's phases are weighted (see :class:`MixtureConfig`); ``volume`` is read as
``intensity``, with a :class:`DeprecationWarning`."""

ParticleRadius = Range(1e-3, 1e3) | Annotated[float, Field(gt=0.0, le=1e3)] | None
"""A powder's particle radius for Brindley's microabsorption, micrometre: one value, a
``(low, high)`` range drawn uniformly per mixture, or None (no microabsorption)."""


def without_unset_radius(data: Any) -> Any:
    """A dump without ``particle_radius_um`` when it is None (older dumps and keys hold)."""
    if isinstance(data, dict) and data.get("particle_radius_um", 0) is None:
        data.pop("particle_radius_um")
    return data


class MixtureConfig(_Frozen):
    """How multi-phase training mixtures are drawn (paper 002).

    Attributes:
        n_materials: N, materials in the pool (the length of the phase-fraction target).
        max_phases: K, most coexisting phases per mixture; k is uniform in 1..K.
        phase_draw: ``pool`` (paper 002: each of the k phases is a random (material,
            strain) pattern of the N x S pool, so one material may appear under several
            strain conditions; they count as distinct phases and share one output) or
            ``distinct`` (k distinct materials; needs K <= N).
        batch_size: mixtures per batch.
        fraction_mode: ``intensity`` (paper 002's intensity-type fraction: each phase's
            max-100 peak list times its fraction; target = those fractions) or ``weight``
            (physical weight fractions from ``intensity_raw``, density and cell volume;
            target = weight fractions). ``volume``, the former name of ``intensity``, is
            accepted with a :class:`DeprecationWarning`.
        particle_radius_um: Brindley microabsorption (``weight`` mode only): the powder's
            particle radius, micrometre, one value or a ``(low, high)`` range drawn per
            mixture; each phase's intensity is multiplied by its particle absorption factor
            ``tau((mu_i - mu_bar) R)`` (:mod:`xrdpipe.patterns.microabsorption`). None
            (default): no microabsorption, the engine exactly as before.
    """

    n_materials: int = Field(default=5, ge=1)
    max_phases: int = Field(default=3, ge=1)
    batch_size: int = Field(default=512, ge=1)
    fraction_mode: FractionMode = "intensity"
    phase_draw: Literal["pool", "distinct"] = "pool"
    particle_radius_um: ParticleRadius = None

    @model_serializer(mode="wrap")
    def _without_unset_radius(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Dumps without ``particle_radius_um`` when None: fixed-set keys stay as they were."""
        return without_unset_radius(handler(self))

    @property
    def particle_radius_range(self) -> tuple[float, float] | None:
        """``(low, high)`` of the particle radius, micrometre (equal for one value), or None."""
        r = self.particle_radius_um
        if r is None:
            return None
        return (float(r), float(r)) if isinstance(r, int | float) else (float(r[0]), float(r[1]))

    @model_validator(mode="after")
    def _k_le_n(self) -> MixtureConfig:
        if self.phase_draw == "distinct" and self.max_phases > self.n_materials:
            raise ValueError(
                f"max_phases {self.max_phases} must not exceed n_materials {self.n_materials} "
                "with phase_draw 'distinct' (use phase_draw 'pool')"
            )
        if self.particle_radius_um is not None and self.fraction_mode != "weight":
            raise ValueError(
                f"particle_radius_um {self.particle_radius_um!r} needs fraction_mode 'weight' "
                f"(Brindley's factor applies to weight fractions), not {self.fraction_mode!r}"
            )
        return self


class AugmentConfig(_Frozen):
    """Paper 000's augmentations on rendered profiles (peak scaling, elimination, shift).

    Each augmentation is applied to a pattern with its probability; within a pattern, each
    detected peak is picked with the given fraction.

    Attributes:
        scale_prob: probability that a pattern gets peak scaling.
        scale_factor_range: factor c applied to a picked peak (above its local baseline).
        scale_peak_fraction: fraction of detected peaks picked for scaling.
        eliminate_prob: probability that a pattern gets peak elimination.
        eliminate_fraction: fraction of detected peaks removed (down to the local baseline).
        strain_prob: probability that a pattern gets an extra isotropic strain (not in paper
            000; 0 by default): every d-spacing scales by ``1 + e``, so each peak moves to
            ``2 asin(sin(theta) / (1 + e))``. It keeps every lattice symmetry, so symmetry
            labels stay true, and it fills the gaps between the stored strain conditions.
        max_isotropic_strain: ``e`` drawn uniformly in [-max, +max].
        shift_prob: probability that a pattern is shifted along two-theta.
        max_shift_deg: shift drawn uniformly in [-max, +max] degrees; vacated points are 0.
        peak_window_deg: half-width of the window around a peak maximum that is scaled or
            removed, degrees (a Hann taper, so the edit fades out smoothly).
        peak_min_height: a local maximum counts as a peak only if it rises this far above
            the local baseline, as a fraction of the pattern maximum.
    """

    scale_prob: float = Field(default=0.5, ge=0.0, le=1.0)
    scale_factor_range: Range(0.0, 100.0) = (0.5, 1.5)
    scale_peak_fraction: float = Field(default=0.3, ge=0.0, le=1.0)
    eliminate_prob: float = Field(default=0.5, ge=0.0, le=1.0)
    eliminate_fraction: float = Field(default=0.2, ge=0.0, le=1.0)
    strain_prob: float = Field(default=0.0, ge=0.0, le=1.0)
    max_isotropic_strain: float = Field(default=0.005, ge=0.0, le=0.1)
    shift_prob: float = Field(default=0.5, ge=0.0, le=1.0)
    max_shift_deg: float = Field(default=0.5, ge=0.0)
    peak_window_deg: float = Field(default=0.4, gt=0.0)
    peak_min_height: float = Field(default=0.02, ge=0.0, le=1.0)
