"""Typed configuration: the catalog (datasets), the training presets and the site settings.

- :mod:`xrdpipe.config.catalog`: ``catalog.yaml``, its subsets and :func:`load_catalog`;
- :mod:`xrdpipe.config.presets`: the training presets, typed sections mapped by name onto
  the model and loop configs;
- :mod:`xrdpipe.config.settings`: the ``XRDPIPE_*`` site settings;
- :mod:`xrdpipe.config.simulation`: the simulation settings, below the catalog (the store
  reads them without importing it);
- :mod:`xrdpipe.config.synthetic`: a synthetic subset's generation settings (below the
  catalog: the structures package imports them).

``from xrdpipe.config import X`` works for every public name of these modules; each module
is imported on first use, so importing one (the store imports ``simulation``) does not
import the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "catalog": (
        "CATALOG_VERSION CRYSTAL_SYSTEMS LATTICE_SYSTEMS Catalog CodQuery Filters SubsetConfig "
        "SubsetName catalog_path default_catalog_path load_catalog parse_catalog resolve_subset "
        "upgrade_catalog"
    ),
    "presets": (
        "ACNN_VARIANTS ACNNSettings ACNNVariant ClassifierData ClassifierPreset ClassifierSplit "
        "ForestBaseline LoopSettings MixtureSettings PhaseCNNSettings PhaseFractionLoop "
        "PhaseFractionPreset PhaseFractionSplit Preset PresetFormatWarning Presets "
        "ResNet1DSettings "
        "Section"
    ),
    "settings": "Settings",
    "simulation": "SimulatedSubset SimulationConfig SymmetrySettings",
    "synthetic": "DEFAULT_ELEMENTS SyntheticConfig scattering_elements",
    "base": "Frozen",
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names.split()}
_PATTERNS = ("AugmentConfig", "ProfileConfig")
"""Re-exported from :mod:`xrdpipe.patterns.config` (a subset's peak shape, augmentations)."""

__all__ = [
    "ACNNSettings",
    "ACNNVariant",
    "ACNN_VARIANTS",
    "AugmentConfig",
    "CATALOG_VERSION",
    "CRYSTAL_SYSTEMS",
    "DEFAULT_ELEMENTS",
    "Catalog",
    "ClassifierData",
    "ClassifierPreset",
    "ClassifierSplit",
    "CodQuery",
    "Filters",
    "ForestBaseline",
    "Frozen",
    "LATTICE_SYSTEMS",
    "LoopSettings",
    "MixtureSettings",
    "PhaseCNNSettings",
    "PhaseFractionLoop",
    "PhaseFractionPreset",
    "PhaseFractionSplit",
    "Preset",
    "PresetFormatWarning",
    "Presets",
    "ResNet1DSettings",
    "ProfileConfig",
    "Section",
    "Settings",
    "SimulatedSubset",
    "SimulationConfig",
    "SubsetConfig",
    "SubsetName",
    "SymmetrySettings",
    "SyntheticConfig",
    "catalog_path",
    "default_catalog_path",
    "load_catalog",
    "parse_catalog",
    "resolve_subset",
    "scattering_elements",
    "upgrade_catalog",
]


def __getattr__(name: str) -> Any:
    if name in _PATTERNS:
        return getattr(importlib.import_module("xrdpipe.patterns.config"), name)
    if name in _HOME_OF:
        return getattr(importlib.import_module(f"xrdpipe.config.{_HOME_OF[name]}"), name)
    raise AttributeError(f"module 'xrdpipe.config' has no attribute {name!r}")


if TYPE_CHECKING:
    from xrdpipe.config.base import Frozen
    from xrdpipe.config.catalog import (
        CATALOG_VERSION,
        CRYSTAL_SYSTEMS,
        LATTICE_SYSTEMS,
        Catalog,
        CodQuery,
        Filters,
        SubsetConfig,
        SubsetName,
        catalog_path,
        default_catalog_path,
        load_catalog,
        parse_catalog,
        resolve_subset,
        upgrade_catalog,
    )
    from xrdpipe.config.presets import (
        ACNN_VARIANTS,
        ACNNSettings,
        ACNNVariant,
        ClassifierData,
        ClassifierPreset,
        ClassifierSplit,
        ForestBaseline,
        LoopSettings,
        MixtureSettings,
        PhaseCNNSettings,
        PhaseFractionLoop,
        PhaseFractionPreset,
        PhaseFractionSplit,
        Preset,
        PresetFormatWarning,
        Presets,
        ResNet1DSettings,
        Section,
    )
    from xrdpipe.config.settings import Settings
    from xrdpipe.config.simulation import SimulatedSubset, SimulationConfig, SymmetrySettings
    from xrdpipe.config.synthetic import DEFAULT_ELEMENTS, SyntheticConfig, scattering_elements
    from xrdpipe.patterns.config import AugmentConfig, ProfileConfig
