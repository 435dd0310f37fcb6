"""The segexplain explorer inside QGIS: bundle layers, latent scatter, linked selection.

Imports only numpy, pyqtgraph and the QGIS API (never torch, sklearn or rasterio).

- `plugin`: menu, toolbar, drops; `dialogs`, `inputs`, `processing/`: runs of the core
  in a worker Python (`worker`, configured in `settings`, picked in `settings_dialog`).
- `dock`: the explorer widget, its layout and bundle lifecycle; one `session` per open
  bundle (attributes, `layers` on the map, `link` to the footprint layer's selection).
- No Qt: `selection` (what is selected, merges, mean IoU, `MapSync` to the map),
  `brushes` (rectangle / lasso geometry), `coloring` (palette codes per point),
  `colors` (every palette), `captions` (the words shown).
- pyqtgraph (through `pg`), no QGIS: `scatter` (the plane, heatmap, brushes, hover)
  drawing `point_cloud` items. With QGIS: the `gallery` and `clusters` panels, `map_view`
  (zoom, selection glow), `screenshot` (headless pictures), `ui` (errors to the
  message bar).
"""
