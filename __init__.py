"""segexplain QGIS plugin entry point (the repository root is the plugin folder).

Nothing heavy is imported here: QGIS imports this module at start-up.
"""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """Called by QGIS to create the plugin."""
    from .segexplain_qgis.plugin import SegexplainPlugin

    return SegexplainPlugin(iface)
