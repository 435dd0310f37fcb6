"""Latent analytics on a PatchTable: PCA, IoU estimators, clusters, novelty, statistics.

`fit.analyze_table` learns them on a labelled run; `apply.estimate_table` places a new
region in a fitted reference's space.
"""
