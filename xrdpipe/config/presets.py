"""Training presets: typed sections that map, field by field and by name, onto the configs.

A preset is a few sections, each validated once here and passed on by field name, never
copied field by field (``tests/config/test_presets.py`` walks every section and the config
it maps to):

- ``model``: the network's config (:class:`~xrdpipe.models.PhaseCNNConfig` or
  :class:`~xrdpipe.models.ACNNConfig`) of the same field names;
- ``train``: the training loop's options, a :class:`~xrdpipe.training.config.TrainConfig` of
  the same field names (:class:`LoopSettings`: the same options for both models: learning
  rate schedule, weight decay, gradient clipping, weight averaging, budgets);
- ``split``: how the data are split and sized (read by the model's training module);
- phase fractions only, ``mixtures``: :class:`~xrdpipe.patterns.MixtureConfig` fields;
- classifier only, ``data`` (loss and augmentation) and ``baseline`` (the random forest).

Presets written in the former flat format (every key at the top) still load: each key is
moved to its section, with a :class:`PresetFormatWarning` naming where it goes.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from xrdpipe.config.base import Frozen
from xrdpipe.patterns.config import (
    AugmentConfig,
    FractionMode,
    ParticleRadius,
    ProfileConfig,
    without_unset_radius,
)


class PresetFormatWarning(FutureWarning):
    """A catalog or preset in a former format: it loads, and the message says what to change."""


class Section(Frozen):
    """A section of a preset.

    Attributes:
        maps_to: the config whose fields of the same names this section fills (``None``: read
            by the training module itself).
        selectors: fields that choose among configs instead of filling one (the a-CNN's
            ``variants``).
    """

    maps_to: ClassVar[str | None] = None
    selectors: ClassVar[tuple[str, ...]] = ()

    def config_fields(self) -> dict[str, Any]:
        """The fields passed on by name to :attr:`maps_to` (all but the selectors)."""
        return {k: v for k, v in self if k not in self.selectors}


def without_defaults(section: Section, data: Any, names: tuple[str, ...]) -> Any:
    """``data`` (a section's dump) less the fields ``names`` that hold their defaults.

    Fields added after presets were first logged are dumped only when set, so the training
    identities (and MLflow parameters) of the existing presets stay what they were.
    """
    if isinstance(data, dict):
        for name in names:
            if getattr(section, name) == type(section).model_fields[name].default:
                data.pop(name, None)
    return data


class LoopSettings(Section):
    """The training loop's options, the same for both models (paper 000's defaults).

    Each is the :class:`~xrdpipe.training.config.TrainConfig` field of the same name; the run
    adds its own (seed, steps per epoch, device override, checkpoints).

    Attributes:
        epochs: most epochs.
        batch_size: examples per step.
        lr: peak learning rate of Adam (AdamW with ``weight_decay``).
        weight_decay: decoupled weight decay (0: plain Adam, the papers).
        lr_schedule: ``constant`` (the papers) or ``cosine`` (by epochs or ``max_minutes``).
        grad_clip: gradient-norm clip (``None``: none, the papers).
        ema_decay: validate, keep and register an exponential moving average of the weights
            with this decay per step (``None``: the raw weights, the papers).
        early_stopping_patience: epochs without validation improvement (``None``: never).
        max_minutes: wall-clock budget of the loop (``None``: none).
        device: ``auto``, ``cpu``, ``cuda``...
        num_threads: torch CPU threads during training (``None``: as is).
        cpu_bf16: bf16 autocast of the forward passes on a CPU (CUDA always uses it); about
            1.7x the steps per minute on a CPU with AVX512-BF16. Dumped only when set.
    """

    maps_to: ClassVar[str | None] = "TrainConfig"

    epochs: int = Field(default=200, ge=1)
    batch_size: int = Field(default=128, ge=2)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    grad_clip: float | None = Field(default=None, gt=0)
    ema_decay: float | None = Field(default=None, gt=0, lt=1)
    early_stopping_patience: int | None = Field(default=10, ge=1)
    max_minutes: float | None = Field(default=None, gt=0)
    device: str = "auto"
    num_threads: int | None = Field(default=None, ge=1)
    cpu_bf16: bool = False

    @model_serializer(mode="wrap")
    def _new_fields_when_set(self, handler: SerializerFunctionWrapHandler) -> Any:
        return without_defaults(self, handler(self), ("cpu_bf16",))


class PhaseFractionLoop(LoopSettings):
    """:class:`LoopSettings` with paper 002's defaults: 3000 epochs, batch 512, lr 2e-4."""

    epochs: int = Field(default=3000, ge=1)
    batch_size: int = Field(default=512, ge=2)
    lr: float = Field(default=2e-4, gt=0)
    early_stopping_patience: int | None = Field(default=None, ge=1)


class PhaseCNNSettings(Section):
    """The phase-fraction CNN (paper 002): :class:`~xrdpipe.models.PhaseCNNConfig` fields.

    Attributes:
        width: filter and hidden-size multiplier (paper: 1.0, ~30 M parameters).
        fc_sizes: hidden fully connected sizes at width 1.
    """

    maps_to: ClassVar[str | None] = "PhaseCNNConfig"

    width: float = Field(default=1.0, gt=0)
    fc_sizes: tuple[int, ...] = (1536, 1024)


class PhaseFractionSplit(Section):
    """How the phase-fraction data are split and sized (paper 002).

    Attributes:
        train_fraction: share of the training strains that trains (paper: 0.6).
        epoch_size: mixtures per epoch; ``None`` = paper 002's definition, the training
            part of the training strains times N (0.6 x 500 x N).
        n_validation: fixed validation mixtures from the 40 % validation strains.
        n_test: fixed test mixtures from the held-out test strains (paper: 10,000).
    """

    train_fraction: float = Field(default=0.6, gt=0, lt=1)
    epoch_size: int | None = Field(default=None, ge=1)
    n_validation: int = Field(default=2048, ge=1)
    n_test: int = Field(default=10000, ge=1)


class MixtureSettings(Section):
    """How training mixtures are drawn: :class:`~xrdpipe.patterns.MixtureConfig` fields.

    Attributes:
        fraction_mode: ``intensity`` (paper 002) or ``weight``; ``volume`` is a deprecated
            alias of ``intensity``.
        phase_draw: ``pool`` (paper 002) or ``distinct``.
        particle_radius_um: Brindley microabsorption's particle radius, micrometre (one value
            or a range; ``weight`` mode only); None (default): none.
    """

    maps_to: ClassVar[str | None] = "MixtureConfig"

    fraction_mode: FractionMode = "intensity"
    phase_draw: Literal["pool", "distinct"] = "pool"
    particle_radius_um: ParticleRadius = None

    @model_serializer(mode="wrap")
    def _without_unset_radius(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Dumps without ``particle_radius_um`` when None (run parameters as before)."""
        return without_unset_radius(handler(self))


ACNN_VARIANTS = ("position_channel", "paper", "binned")
"""a-CNN variants: ``paper`` = paper 000's bare network (global average pooling),
``position_channel`` = the same plus a two-theta coordinate input channel (CoordConv), and
``binned`` = the paper's convolutions with the average pooled over ``pool_bins`` equal
two-theta windows instead of the whole range (the dense layer sees where features are)."""

ACNNVariant = Literal["position_channel", "paper", "binned"]


class ResNet1DSettings(Section):
    """The 1D ResNet (a departure from paper 000): :class:`~xrdpipe.models.ResNet1DConfig`.

    Attributes:
        widths: channels of each stage.
        blocks: residual blocks per stage.
        kernel: kernel of the blocks' convolutions (odd).
        stem_kernel: kernel of the stem convolution (odd).
        position_channel: a two-theta coordinate as a second input channel.
        dropout: before the dense layer.
    """

    maps_to: ClassVar[str | None] = "ResNet1DConfig"

    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: int = Field(default=2, ge=1)
    kernel: int = Field(default=7, ge=1)
    stem_kernel: int = Field(default=15, ge=1)
    position_channel: bool = True
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)


class ACNNSettings(Section):
    """The classifier network: the a-CNN (paper 000) fields and variants, or the 1D ResNet.

    Attributes:
        variants: a-CNN variants trained on the same split, in order; the first is the one
            logged and registered, the others are reported beside it (see ``ACNN_VARIANTS``).
        pool_bins: two-theta windows of the ``binned`` variant's pooling.
        architecture: ``acnn`` (paper 000, the default) or ``resnet1d``
            (:mod:`xrdpipe.models.resnet1d`; only with ``data.patterns: measured_like``,
            where it replaces the variants).
        resnet: the ResNet's settings (``architecture: resnet1d``).
    """

    maps_to: ClassVar[str | None] = "ACNNConfig"
    selectors: ClassVar[tuple[str, ...]] = ("variants", "architecture", "resnet")

    variants: tuple[ACNNVariant, ...] = Field(default=("position_channel", "paper"), min_length=1)
    pool_bins: int = Field(default=32, ge=2)
    architecture: Literal["acnn", "resnet1d"] = "acnn"
    resnet: ResNet1DSettings = ResNet1DSettings()

    @model_serializer(mode="wrap")
    def _new_fields_when_set(self, handler: SerializerFunctionWrapHandler) -> Any:
        return without_defaults(self, handler(self), ("architecture", "resnet"))


class ClassifierSplit(Section):
    """How the classifier's patterns are split (paper 000).

    Attributes:
        max_train_strains: use at most this many training strain conditions per material
            (``None``: all; the validation strains are taken from them).
        validation_fraction: share of the training strains (protocol ``strain``) or of the
            training materials (protocol ``material``) held out for early stopping.
        test_material_fraction: share of each class's materials held out (protocol ``material``).
        min_materials_per_class: a space group is a class only with at least this many materials.
    """

    max_train_strains: int | None = Field(default=None, ge=2)
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    test_material_fraction: float = Field(default=0.2, gt=0, lt=1)
    min_materials_per_class: int = Field(default=5, ge=1)


class MixtureDetectorSettings(Section):
    """The mixture detector of a measured-like classifier's one-phase flag.

    See :mod:`xrdpipe.training.mixture_detector`.

    Attributes:
        max_minutes: its own training budget, after the classifier's.
        max_phases: most phases of a training mixture (1 to this many, uniform).
        min_fraction: a mixture is labelled so when its smallest intensity fraction is at
            least this; mixtures with a smaller minor phase are left out of the loss.
        balance_line_counts: draw the materials so that each octave of strong-line count
            (1, 2-3, 4-7, 8-15, ... lines) weighs alike, a material repeated at most
            :data:`~xrdpipe.training.mixture_detector.MAX_REPEATS` times
            (:func:`~xrdpipe.training.mixture_detector.line_count_pool`); off: each material
            once.
        cpu_bf16: train the detector under bf16 autocast on a CPU (``train.cpu_bf16`` for
            the detector alone): about 1.4x its patterns per minute with the on-the-fly
            rendering. Either setting turns it on.
    """

    max_minutes: float = Field(default=10.0, gt=0)
    max_phases: int = Field(default=3, ge=2, le=5)
    min_fraction: float = Field(default=0.1, ge=0.0, lt=0.5)
    balance_line_counts: bool = False
    cpu_bf16: bool = False

    @model_serializer(mode="wrap")
    def _new_fields_when_set(self, handler: SerializerFunctionWrapHandler) -> Any:
        return without_defaults(self, handler(self), ("balance_line_counts", "cpu_bf16"))


class ClassifierData(Section):
    """What the classifier learns from: its loss, its patterns and their augmentation.

    Attributes:
        loss: ``cross_entropy`` or ``bce_softmax`` (paper 000's wording).
        augment: apply paper 000's augmentations (scale, eliminate, shift) to training batches
            (``patterns: stored``).
        augmentation: their probabilities and ranges.
        patterns: ``stored`` (paper 000: the store's clean profiles, tensor augmentation) or
            ``measured_like`` (the store's peak lists rendered on the fly through the
            instrument model of ``render``, a fresh seeded draw per batch:
            :mod:`xrdpipe.training.measured_like`).
        render: the grid and instrument of the measured-like patterns (``None``: the lab scan
            of :data:`xrdpipe.training.measured_like.LAB_SCAN_PROFILE`).
        max_isotropic_strain: measured-like: each pattern's cell is scaled by ``1 + e``, ``e``
            uniform in ``[-max, max]`` (on the fly, besides the stored strain conditions).
        max_peaks: measured-like: the strongest this many reflections of each peak list are
            rendered (large low-symmetry cells have thousands; the weakest add little).
        epoch_size: measured-like: patterns per epoch (each drawn afresh).
        mixture_detector: measured-like: train a mixture detector after the classifier, for
            the one-phase flag (``None``: none; the flag then has only its peak and
            probability tests, which miss most mixtures).
    """

    loss: Literal["cross_entropy", "bce_softmax"] = "cross_entropy"
    augment: bool = True
    augmentation: AugmentConfig = AugmentConfig()
    patterns: Literal["stored", "measured_like"] = "stored"
    render: ProfileConfig | None = None
    max_isotropic_strain: float = Field(default=0.02, ge=0.0, lt=0.2)
    max_peaks: int = Field(default=384, ge=1)
    epoch_size: int = Field(default=8192, ge=2)
    mixture_detector: MixtureDetectorSettings | None = None

    @model_serializer(mode="wrap")
    def _new_fields_when_set(self, handler: SerializerFunctionWrapHandler) -> Any:
        names = (
            "patterns", "render", "max_isotropic_strain", "max_peaks", "epoch_size",
            "mixture_detector",
        )  # fmt: skip
        return without_defaults(self, handler(self), names)


class ForestBaseline(Section):
    """The random forest trained beside the a-CNN on the same split.

    Attributes:
        rf_bins: points the forest sees (patterns binned by averaging).
        rf_trees: trees (0: no baseline).
    """

    rf_bins: int = Field(default=450, ge=8)
    rf_trees: int = Field(default=200, ge=0)


class Preset(Frozen):
    """A preset: sections only. Flat keys (the former format) are moved to their section."""

    @classmethod
    def sections(cls) -> dict[str, type[Section]]:
        """Section name -> section model."""
        return {name: field.annotation for name, field in cls.model_fields.items()}  # type: ignore[misc]

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False):
        """A validated copy; ``update`` may name sections or their fields (``{"epochs": 2}``)."""
        if not update:
            return super().model_copy(deep=deep)
        data = self.model_dump()
        routed, _ = sectioned(type(self), dict(update))
        for name, value in routed.items():
            data[name] = {**data[name], **value} if isinstance(value, dict) else value
        return type(self).model_validate(data)

    @model_validator(mode="before")
    @classmethod
    def _flat_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data, moved = sectioned(cls, data)
            if moved:
                warnings.warn(flat_format_message(cls.__name__, moved), PresetFormatWarning, 3)
        return data


class PhaseFractionPreset(Preset):
    """How the phase-fraction CNN (paper 002) is trained: a named preset of ``catalog.yaml``."""

    model: PhaseCNNSettings = PhaseCNNSettings()
    train: PhaseFractionLoop = PhaseFractionLoop()
    split: PhaseFractionSplit = PhaseFractionSplit()
    mixtures: MixtureSettings = MixtureSettings()


class ClassifierPreset(Preset):
    """How the a-CNN classifier (paper 000) is trained: a named preset of ``catalog.yaml``."""

    model: ACNNSettings = ACNNSettings()
    train: LoopSettings = LoopSettings()
    split: ClassifierSplit = ClassifierSplit()
    data: ClassifierData = ClassifierData()
    baseline: ForestBaseline = ForestBaseline()


class Presets(Frozen):
    """Named training presets (``cpu``, ``paper``, ...) of each model."""

    phase_fractions: dict[str, PhaseFractionPreset] = Field(default_factory=dict)
    classifier: dict[str, ClassifierPreset] = Field(default_factory=dict)


def sectioned(
    preset: type[Preset], data: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """``data`` with every flat key moved under its section, and what moved where.

    Keys that are section names, or belong to no section, stay (validation names the
    unknown ones).
    """
    sections = preset.sections()
    owner = {key: name for name, section in sections.items() for key in section.model_fields}
    out = {k: dict(v) if k in sections and isinstance(v, dict) else v for k, v in data.items()}
    moved: dict[str, list[str]] = {}
    for key in list(out):
        if key in sections or key not in owner:
            continue
        section = out.setdefault(owner[key], {})
        if isinstance(section, dict):
            section[key] = out.pop(key)
            moved.setdefault(owner[key], []).append(key)
    return out, moved


def flat_format_message(where: str, moved: dict[str, list[str]]) -> str:
    """What to change in a flat preset: ``move width, fc_sizes under model:; ...``."""
    parts = "; ".join(f"{', '.join(keys)} under `{name}:`" for name, keys in moved.items())
    return f"{where} is in the former flat preset format: move {parts}"
