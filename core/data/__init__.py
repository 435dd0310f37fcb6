"""Input data: discover image / label pairs, read imagery and labels, cut windows.

`datasets` (pairs, Inria layout, splits) -> `imagery` (validated, normalised reads)
and `labels` (raster masks or vector footprints on the image grid) -> `windows`
(patch grid and footprints).
"""
