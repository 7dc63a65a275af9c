"""What the training tests share: the wavelength, a neutral profile, a tiny measured-like preset."""

from __future__ import annotations

import numpy as np

from xrdpipe.config import ClassifierPreset
from xrdpipe.patterns.config import InstrumentConfig, ProfileConfig

WAVELENGTH = 1.54056

PLAIN = ProfileConfig(
    two_theta_min=20.0,
    two_theta_max=60.0,
    n_points=4001,
    noise_fraction=(0.0, 0.0),
    background_amplitude=(0.0, 0.0),
    crystallite_size_nm=(200.0, 200.0),
    instrument=InstrumentConfig(),  # the instrument path, every effect neutral
)
GRID = np.linspace(20.0, 60.0, 4001)
"""The two-theta grid of :data:`PLAIN`."""

TINY_RENDER = ProfileConfig(
    two_theta_min=10.0,
    two_theta_max=80.0,
    n_points=701,
    ka_doublet=True,
    instrument=InstrumentConfig(sample_displacement_mm=(-0.1, 0.1)),
)


def tiny_measured_like(epochs: int = 1, detector: bool = False) -> ClassifierPreset:
    """A ResNet of widths 4-8 on :data:`TINY_RENDER`, 16 patterns an epoch (seconds to train);
    with ``detector``, a mixture detector of 3 seconds."""
    data = {"patterns": "measured_like", "render": TINY_RENDER, "epoch_size": 16, "max_peaks": 32}
    if detector:
        data["mixture_detector"] = {"max_minutes": 0.05}
    return ClassifierPreset(
        model={"architecture": "resnet1d", "resnet": {"widths": [4, 8], "blocks": 1}},
        train={"batch_size": 8, "epochs": epochs, "num_threads": 1},
        split={"validation_fraction": 0.2, "test_material_fraction": 0.2},
        data=data,
    )
