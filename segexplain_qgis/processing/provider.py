"""The `segexplain` Processing provider."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..settings import plugin_dir
from .algorithms import AnalyzeAlgorithm, EstimateAlgorithm, ExportTasksAlgorithm


class SegexplainProvider(QgsProcessingProvider):
    """Algorithms that run the segexplain core in the configured worker Python."""

    def id(self) -> str:
        return "segexplain"

    def name(self) -> str:
        return "segexplain"

    def longName(self) -> str:
        return "segexplain: explain a building-segmentation U-Net"

    def icon(self) -> QIcon:
        return QIcon(str(plugin_dir() / "icons" / "icon.svg"))

    def loadAlgorithms(self) -> None:
        for alg in (AnalyzeAlgorithm(), EstimateAlgorithm(), ExportTasksAlgorithm()):
            self.addAlgorithm(alg)

    def supportedOutputVectorLayerExtensions(self) -> list[str]:
        return ["gpkg", "geojson"]

    def defaultVectorFileExtension(self, hasGeometry: bool = True) -> str:  # noqa: N803
        return "gpkg"
