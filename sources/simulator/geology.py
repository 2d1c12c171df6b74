"""Static geology and soil of the demo world per band: lithology shares and OpenLandMap-like
bulk density and organic carbon profiles (stored units)."""

from __future__ import annotations

import numpy as np

from sources import catalog

# Share of each lithology class per band (rows follow catalog.LITHOLOGY_CLASSES): glaciers,
# volcanics and plutons of the southern ranges; metamorphic Yukon-Tanana uplands inland;
# sedimentary Brooks Range; unconsolidated deposits and thaw lakes on the North Slope.
LITHOLOGY_SHARES = np.array(
    [
        # band: 0      1      2      3      4      5
        [0.050, 0.040, 0.030, 0.030, 0.040, 0.080],  # water
        [0.220, 0.280, 0.300, 0.300, 0.280, 0.550],  # unconsolidated
        [0.120, 0.040, 0.010, 0.000, 0.005, 0.000],  # glacier
        [0.100, 0.060, 0.050, 0.040, 0.020, 0.005],  # volcanic
        [0.060, 0.030, 0.010, 0.010, 0.005, 0.000],  # melange
        [0.120, 0.100, 0.080, 0.070, 0.040, 0.005],  # plutonic
        [0.180, 0.220, 0.220, 0.250, 0.400, 0.330],  # sedimentary
        [0.130, 0.210, 0.280, 0.280, 0.190, 0.020],  # metamorphic
        [0.020, 0.020, 0.020, 0.020, 0.020, 0.010],  # unknown
    ]
)
_DEPTHS_CM = np.array(catalog.OPENLANDMAP_DEPTHS_CM, dtype=float)


def bulk_density_stored(band: int) -> np.ndarray:
    """Fine-earth bulk density (10 kg m-3): light organic surface, compacting with depth;
    northern surfaces are more organic, hence lighter."""
    return 155.0 - (40.0 + 2.5 * band) * np.exp(-_DEPTHS_CM / 40.0)


def organic_carbon_stored(band: int) -> np.ndarray:
    """Organic carbon (5 g kg-1): rich near the surface and in the cold north, where
    cryoturbation carries carbon deeper."""
    surface = 16.0 + 6.0 * band
    decay_cm = 25.0 + 6.0 * band
    return surface * np.exp(-_DEPTHS_CM / decay_cm) + 1.0
