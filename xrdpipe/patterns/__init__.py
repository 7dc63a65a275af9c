"""The on-the-fly data engine: peak profiles, multi-phase mixtures and augmentations (torch)."""

# Exports load lazily (PEP 562) so that reading the catalog does not import torch.
from importlib import import_module
from typing import Any

_EXPORTS = {
    "AmorphousHumpConfig": "config",
    "AugmentConfig": "config",
    "ChebyshevBackgroundConfig": "config",
    "CountingNoiseConfig": "config",
    "InstrumentConfig": "config",
    "MarchDollaseConfig": "config",
    "TCHWidthConfig": "config",
    "automatic_to_fixed_slit": "physics",
    "displacement_shift_deg": "physics",
    "draw_instrument": "instrument",
    "grid_points": "config",
    "render_instrument": "instrument",
    "tch_fwhm_eta": "physics",
    "MixtureConfig": "config",
    "MixtureDataset": "mixtures",
    "MixtureSampler": "mixtures",
    "mixture_loader": "mixtures",
    "PeakArrays": "mixtures",
    "ProfileConfig": "config",
    "augment_peak_list": "augment",
    "augment_profiles": "augment",
    "eliminate_peaks": "augment",
    "find_peaks": "augment",
    "make_fixed_mixture_set": "mixtures",
    "mixture_intensities": "mixtures",
    "render_clean": "render",
    "render_naive": "render",
    "render_peaks": "render",
    "render_profiles": "render",
    "scale_peaks": "augment",
    "scherrer_fwhm_deg": "render",
    "shift_patterns": "augment",
    "strain_patterns": "augment",
    "split_train_validation": "mixtures",
    "two_theta_grid": "render",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"xrdpipe.patterns.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'xrdpipe.patterns' has no attribute {name!r}")
