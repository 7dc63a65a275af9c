"""Presets are typed sections mapped by field name onto the model, loop and mixture configs.

The walk below fails when a preset field is lost on the way to its config, or listed in two
sections, so no field list is ever copied by hand.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest

from xrdpipe.config import (
    ClassifierPreset,
    LoopSettings,
    PhaseFractionPreset,
    PresetFormatWarning,
    load_catalog,
    parse_catalog,
)
from xrdpipe.errors import ConfigError
from xrdpipe.models import ACNNConfig, PhaseCNNConfig
from xrdpipe.patterns import MixtureConfig
from xrdpipe.training.classifier import acnn_config, classifier_train_config
from xrdpipe.training.config import TrainConfig, loop_config

CONFIGS = {
    "TrainConfig": TrainConfig,
    "PhaseCNNConfig": PhaseCNNConfig,
    "ACNNConfig": ACNNConfig,
    "MixtureConfig": MixtureConfig,
}
PRESETS = (PhaseFractionPreset, ClassifierPreset)


def config_fields(name: str) -> set[str]:
    config = CONFIGS[name]
    if dataclasses.is_dataclass(config):
        return {f.name for f in dataclasses.fields(config)}
    return set(config.model_fields)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.__name__)
def test_every_field_has_one_section_and_reaches_its_config(preset):
    seen: dict[str, str] = {}
    for name, section in preset.sections().items():
        for field in section.model_fields:
            assert field not in seen, f"{field} is in sections {seen[field]} and {name}"
            seen[field] = name
        if section.maps_to is not None:
            lost = (
                set(section.model_fields) - set(section.selectors) - config_fields(section.maps_to)
            )
            assert lost == set(), f"{preset.__name__}.{name} -> {section.maps_to} loses {lost}"
    assert len(seen) == sum(len(s.model_fields) for s in preset.sections().values())


def test_both_models_have_the_same_loop_options():
    phase, classifier = (p.sections()["train"] for p in PRESETS)
    assert issubclass(phase, LoopSettings) and classifier is LoopSettings
    assert list(phase.model_fields) == list(classifier.model_fields)
    assert {"lr_schedule", "weight_decay", "grad_clip", "ema_decay"} <= set(phase.model_fields)


def test_the_loop_options_pass_through_by_name():
    preset = ClassifierPreset(
        train={"epochs": 7, "lr": 0.02, "weight_decay": 0.01, "grad_clip": 2.0, "ema_decay": 0.9}
    )
    cfg = classifier_train_config(preset, seed=3, device="cpu")
    for field, value in preset.train:
        assert getattr(cfg, field) == (value if field != "device" else "cpu"), field
    assert (cfg.seed, cfg.eval_batch_size, cfg.steps_per_epoch) == (3, 1024, None)
    with pytest.raises(ConfigError, match=r"\['widht'\] are not TrainConfig fields"):
        loop_config({"widht": 1})


@pytest.mark.parametrize("variant", ["paper", "position_channel", "binned"])
def test_the_acnn_config_of_each_variant(variant):
    preset = ClassifierPreset(model={"pool_bins": 12})
    cfg = acnn_config(variant, 1501, 7, preset)
    expected = {"paper": (False, 1), "position_channel": (True, 1), "binned": (False, 12)}
    assert (cfg.position_channel, cfg.pool_bins) == expected[variant]
    assert cfg == ACNNConfig(
        n_points=1501,
        n_classes=7,
        position_channel=variant == "position_channel",
        pool_bins=12 if variant == "binned" else 1,
    )


def test_flat_presets_still_load_and_say_what_to_move():
    with pytest.warns(PresetFormatWarning, match=r"move width under `model:`; .*lr under `train:`"):
        flat = PhaseFractionPreset(width=0.3, lr=5e-3, n_test=64, fraction_mode="weight")
    assert flat == PhaseFractionPreset(
        model={"width": 0.3},
        train={"lr": 5e-3},
        split={"n_test": 64},
        mixtures={"fraction_mode": "weight"},
    )


def test_model_copy_routes_fields_to_their_sections_and_validates():
    preset = ClassifierPreset()
    copy = preset.model_copy(update={"epochs": 3, "variants": ("binned",), "rf_trees": 0})
    assert (copy.train.epochs, copy.model.variants, copy.baseline.rf_trees) == (3, ("binned",), 0)
    assert copy.train.lr == preset.train.lr and preset.train.epochs == 200
    with pytest.raises(ValueError, match="epochs"):
        preset.model_copy(update={"epochs": 0})


def test_a_format_1_catalog_loads_with_a_warning_naming_the_changes():
    data = {
        "version": 1,
        "subsets": {"demo": {"source": "package"}},
        "presets": {
            "phase_fractions": {"cpu": {"width": 0.22, "epochs": 40}},
            "classifier": {"cpu": {"augment": False, "rf_trees": 100}},
        },
    }
    with pytest.warns(PresetFormatWarning) as caught:
        catalog = parse_catalog(data, "old.yaml")
    message = str(caught[0].message)
    assert "catalog old.yaml is in format 1: set `version: 2`" in message
    assert "presets.phase_fractions.cpu: width under `model:`; epochs under `train:`" in message
    assert "presets.classifier.cpu: augment under `data:`; rf_trees under `baseline:`" in message
    assert catalog.preset("phase_fractions", "cpu").model.width == 0.22
    assert catalog.preset("classifier", "cpu").baseline.rf_trees == 100


def test_the_shipped_catalog_is_format_2_with_the_cv_preset():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        catalog = load_catalog()
    cv = catalog.preset("classifier", "cv")
    assert cv.model.variants == ("binned",) and cv.train.max_minutes == 0.75
    assert cv.train.num_threads == 1 and cv.split.validation_fraction == 0.15
    assert cv.data.augment is False and cv.baseline.rf_trees == 100
    paper = catalog.preset("phase_fractions", "paper")
    assert (paper.model.width, paper.train.batch_size, paper.train.lr) == (1.0, 512, 2e-4)
    assert paper.mixtures.fraction_mode == "intensity"
    # anchors, not pasted blocks: demo and hoefer2024 share the filters, acnn overrides one
    assert catalog.subset("demo").filters == catalog.subset("hoefer2024").filters
    assert catalog.subset("acnn").filters.exclude_organic is False
