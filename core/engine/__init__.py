"""One pass of the model over imagery: masks, bottleneck vectors, per-patch metrics.

`inference.analyze_images` streams batches through a backend and fills a `records.PatchTable`
(one row per patch, with `metrics` per patch); `stitch` writes the aligned prediction and
confusion rasters.
"""
