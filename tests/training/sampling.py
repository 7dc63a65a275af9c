"""What the sampler tests share: the wavelength and a profile with every effect neutral."""

from __future__ import annotations

import numpy as np

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
