"""Processing provider: analyze, estimate region and export tasks.

Usable from the toolbox, the graphical modeler and `qgis_process run segexplain:...`.
"""
