"""The analysis bundle: read it, write it, and what an analysis or an estimate puts in it.

`reader` (numpy + standard library only: the QGIS plugin uses it), `writer` (an atomic
folder of open formats), `manifest` (the files and manifest of an analysis / estimate),
`tasks` (GeoPackages of patches for mappers).
"""
