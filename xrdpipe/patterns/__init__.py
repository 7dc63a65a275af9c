"""The on-the-fly data engine: peak profiles, multi-phase mixtures and augmentations (torch)."""

from xrdpipe.patterns.augment import (
    augment_peak_list,
    augment_profiles,
    eliminate_peaks,
    find_peaks,
    scale_peaks,
    shift_patterns,
)
from xrdpipe.patterns.config import AugmentConfig, MixtureConfig, ProfileConfig
from xrdpipe.patterns.mixtures import (
    MixtureDataset,
    MixtureSampler,
    PeakArrays,
    make_fixed_mixture_set,
    mixture_intensities,
    split_train_validation,
)
from xrdpipe.patterns.render import (
    render_clean,
    render_naive,
    render_peaks,
    render_profiles,
    scherrer_fwhm_deg,
    two_theta_grid,
)

__all__ = [
    "AugmentConfig",
    "MixtureConfig",
    "MixtureDataset",
    "MixtureSampler",
    "PeakArrays",
    "ProfileConfig",
    "augment_peak_list",
    "augment_profiles",
    "eliminate_peaks",
    "find_peaks",
    "make_fixed_mixture_set",
    "mixture_intensities",
    "render_clean",
    "render_naive",
    "render_peaks",
    "render_profiles",
    "scale_peaks",
    "scherrer_fwhm_deg",
    "shift_patterns",
    "split_train_validation",
    "two_theta_grid",
]
