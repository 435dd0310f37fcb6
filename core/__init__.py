"""segexplain core: data layer, U-Net engine, latent analytics and bundles (no qgis, no Qt)."""

__version__ = "0.1.0"
