"""The segexplain explorer inside QGIS: bundle layers, latent scatter, linked selection.

Imports only numpy, pyqtgraph and the QGIS API (never torch, sklearn or rasterio).
"""
