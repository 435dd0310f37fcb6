"""The QGIS plugin: menu and toolbar actions, bundle drops on the canvas, the dock."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from qgis.gui import QgsCustomDropHandler
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QFileDialog, QToolBar

from ..core.bundle.reader import GPKG, MANIFEST
from .dock import ExplorerDock
from .ui import guarded

if TYPE_CHECKING:  # dialogs load on demand (initProcessing)
    from .dialogs import RunActions

MENU = "&segexplain"
ICON_RESOURCE = ":/plugins/segexplain/icons/icon.svg"
ICON_FILE = Path(__file__).resolve().parent.parent / "icons" / "icon.svg"


def plugin_icon() -> QIcon:
    """Return the compiled resource icon when resources_rc is built, else the SVG file."""
    try:
        importlib.import_module(f"{__package__.rsplit('.', 1)[0]}.resources_rc")
        icon = QIcon(ICON_RESOURCE)
        if not icon.isNull():
            return icon
    except ImportError:
        pass
    return QIcon(str(ICON_FILE))


def bundle_folder_of(path: str | Path) -> Path | None:
    """Return the bundle folder for a dropped folder / GeoPackage / manifest, else None."""
    p = Path(path)
    if p.is_dir() and (p / MANIFEST).is_file():
        return p
    if p.name in (GPKG, MANIFEST) and (p.parent / MANIFEST).is_file():
        return p.parent
    return None


class BundleDropHandler(QgsCustomDropHandler):
    """Opens a dropped bundle folder (or its GeoPackage / manifest) in the explorer."""

    def __init__(self, plugin: SegexplainPlugin) -> None:
        super().__init__()
        self.plugin = plugin

    def customUriProviderKey(self):
        return "segexplain"

    def handleFileDrop(self, file):
        folder = bundle_folder_of(file)
        if folder is None:
            return False
        self.plugin.open_bundle(str(folder))
        return True


class SegexplainPlugin:
    """Created by classFactory; QGIS calls initGui and unload."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.actions: list[QAction] = []
        self.toolbar: QToolBar | None = None
        self.dock: ExplorerDock | None = None
        self.drop_handler: BundleDropHandler | None = None
        self.open_action: QAction | None = None
        self.dock_action: QAction | None = None
        self.runs: RunActions | None = None  # Analyze… / Estimate… / Settings…, Processing

    # -- QGIS hooks ------------------------------------------------------------------
    def initGui(self) -> None:
        icon = plugin_icon()
        main = self.iface.mainWindow()
        self.open_action = QAction(icon, "Open analysis bundle…", main)
        self.open_action.setObjectName("segexplainOpenBundle")
        self.open_action.setToolTip("Open a segexplain analysis or estimate bundle (.segx)")
        self.open_action.triggered.connect(self._open_clicked)
        self.dock_action = QAction(icon, "Explorer", main)
        self.dock_action.setObjectName("segexplainShowExplorer")
        self.dock_action.setCheckable(True)
        self.dock_action.toggled.connect(self._dock_toggled)
        self.actions = [self.open_action, self.dock_action]
        self.toolbar = self.iface.addToolBar("segexplain")
        self.toolbar.setObjectName("segexplainToolbar")
        for a in self.actions:
            self.iface.addPluginToRasterMenu(MENU, a)
            self.toolbar.addAction(a)
        self.drop_handler = BundleDropHandler(self)
        self.iface.registerCustomDropHandler(self.drop_handler)
        # -- runs: Analyze… / Estimate new region… / Settings… and the Processing provider
        self.initProcessing()
        self._ensure_runs().init_gui()

    def initProcessing(self) -> None:
        """Register the Processing provider (QGIS and qgis_process call this)."""
        self._ensure_runs().init_processing()

    def _ensure_runs(self) -> RunActions:
        if self.runs is None:
            from .dialogs import RunActions

            self.runs = RunActions(self.iface, self.open_bundle, MENU, plugin_icon())
        return self.runs

    def unload(self) -> None:
        if self.runs is not None:  # runs (dialogs.py): menu entries, dialogs, provider
            self.runs.unload()
            self.runs = None
        self.close_dock()
        for a in self.actions:
            self.iface.removePluginRasterMenu(MENU, a)
            if self.toolbar is not None:
                self.toolbar.removeAction(a)
            a.deleteLater()
        self.actions = []
        self.open_action = self.dock_action = None
        if self.toolbar is not None:
            self.iface.mainWindow().removeToolBar(self.toolbar)
            self.toolbar.setParent(None)
            self.toolbar.deleteLater()
            self.toolbar = None
        if self.drop_handler is not None:
            self.iface.unregisterCustomDropHandler(self.drop_handler)
            self.drop_handler = None

    # -- dock ------------------------------------------------------------------------
    def ensure_dock(self) -> ExplorerDock:
        """Return the explorer dock, created and shown on first use."""
        if self.dock is None:
            self.dock = ExplorerDock(self.iface, self.iface.mainWindow())
            self.dock.closed.connect(self._dock_closed)
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.show()
        if self.dock_action is not None and not self.dock_action.isChecked():
            self.dock_action.blockSignals(True)
            self.dock_action.setChecked(True)
            self.dock_action.blockSignals(False)
        return self.dock

    def close_dock(self) -> None:
        """Close the dock: bundles off the map, widget deleted."""
        if self.dock is not None:
            self.dock.close()  # closeEvent -> shutdown -> closed -> _dock_closed

    def _dock_closed(self) -> None:
        dock, self.dock = self.dock, None
        if dock is not None:
            try:
                dock.closed.disconnect(self._dock_closed)
            except (TypeError, RuntimeError):
                pass
            self.iface.removeDockWidget(dock)
            dock.setParent(None)
            dock.deleteLater()
        if self.dock_action is not None:
            self.dock_action.blockSignals(True)
            self.dock_action.setChecked(False)
            self.dock_action.blockSignals(False)

    # -- actions ---------------------------------------------------------------------
    def open_bundle(self, path: str | Path) -> None:
        """Open a bundle in the explorer; errors go to the message bar."""
        self._open(path)

    @guarded
    def _open(self, path: str | Path) -> None:
        self.ensure_dock().open_bundle(path)

    @guarded
    def _open_clicked(self, *_args) -> None:
        path = QFileDialog.getExistingDirectory(
            self.iface.mainWindow(), "Open a segexplain bundle (NAME.segx folder)")
        if path:
            self.ensure_dock().open_bundle(path)

    @guarded
    def _dock_toggled(self, on: bool) -> None:
        if on:
            self.ensure_dock()
        else:
            self.close_dock()
