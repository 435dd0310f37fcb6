"""A segexplain Processing algorithm run as a QGIS background task, followed by signals.

QGIS 3.22's `QgsProcessingAlgRunnerTask(algorithm, parameters, context, feedback)` is
the task Processing's own dialog runs. Its constructor prepares a copy of the algorithm
in the calling (main) thread; a failed preparation cancels the task at once and reports
the error to the feedback. `run` calls `processAlgorithm` in a task-manager thread and
forwards the feedback's progress to the task manager, `cancel` cancels the feedback,
and `executed(ok, results)` comes in the main thread. The task keeps only a reference
to the context and a pointer to the feedback: `AlgorithmRun` holds both (and itself,
in `_RUNNING`) until the task has ended. A QgsProcessingFeedback signals progress only;
`RunFeedback` adds stage and log signals, sent from the task thread and delivered in the
main thread, and keeps the errors it was given.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsMessageLog,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
)
from qgis.PyQt.QtCore import QObject, pyqtSignal

from ...core.errors import InputError
from ..worker import LOG_TAG, push_message


class RunFeedback(QgsProcessingFeedback):
    """Processing feedback with signals for the stage and the log, and the errors kept."""

    stageChanged = pyqtSignal(str)
    logged = pyqtSignal(str)

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []
        self.stage_threads: set[int] = set()  # the threads that reported stages

    def setProgressText(self, text: str) -> None:
        self.stage_threads.add(threading.get_ident())
        super().setProgressText(text)
        self.stageChanged.emit(text)

    def pushInfo(self, info: str) -> None:
        super().pushInfo(info)
        self.logged.emit(info)

    def pushWarning(self, warning: str) -> None:
        super().pushWarning(warning)
        self.logged.emit(warning)

    def pushDebugInfo(self, info: str) -> None:
        super().pushDebugInfo(info)
        self.logged.emit(info)

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N803
        self.errors.append(error)
        super().reportError(error, fatalError)
        self.logged.emit(error)


_RUNNING: set[AlgorithmRun] = set()


class AlgorithmRun(QObject):
    """One run of a registered Processing algorithm in QGIS's task manager.

    `start()` prepares it (a refused parameter raises InputError with the algorithm's
    message; nothing starts) and adds the task. Signals (main thread): `succeeded(dict)`
    with the algorithm's results, `failed(str)` with the error ("" when cancelled),
    `ended()` after either. `on_done(results)` runs after success (the dialogs open the
    bundle there). Errors and cancels also go to the message bar when `iface` is given.
    """

    succeeded = pyqtSignal(dict)
    failed = pyqtSignal(str)
    ended = pyqtSignal()

    def __init__(self, algorithm_id: str, parameters: dict[str, Any], description: str,
                 *, iface: Any = None,
                 on_done: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__()
        self.algorithm_id = algorithm_id
        self.parameters = dict(parameters)
        self.description = description
        self.iface = iface
        self.on_done = on_done
        self.context = QgsProcessingContext()
        self.context.setProject(QgsProject.instance())
        self.feedback = RunFeedback()
        self.task: QgsProcessingAlgRunnerTask | None = None
        self.results: dict[str, Any] | None = None
        self.message = ""
        self.was_cancelled = False
        self.done = False  # the task has ended (a queued run cancelled ends within cancel())

    def start(self) -> QgsProcessingAlgRunnerTask:
        """Prepare the algorithm and hand the task to the task manager."""
        alg = QgsApplication.processingRegistry().algorithmById(self.algorithm_id)
        if alg is None:
            raise InputError(f"Processing algorithm {self.algorithm_id}: not registered; "
                             "enable the segexplain plugin in Plugins ▸ Manage and Install")
        task = QgsProcessingAlgRunnerTask(alg, self.parameters, self.context, self.feedback)
        if task.isCanceled():  # the preparation refused the parameters
            raise InputError(self.feedback.errors[-1] if self.feedback.errors else
                             f"{self.algorithm_id}: the parameters were refused")
        task.setDescription(self.description)
        task.executed.connect(self._executed)
        self.task = task
        _RUNNING.add(self)
        QgsApplication.taskManager().addTask(task)
        return task

    def cancel(self) -> None:
        """Stop the run: the algorithm stops its worker and removes the half bundle."""
        if self.task is not None:
            self.task.cancel()

    def _executed(self, ok: bool, results: dict[str, Any]) -> None:  # main thread
        _RUNNING.discard(self)
        self.done = True
        try:
            self._report(ok, dict(results or {}))
        finally:
            self.ended.emit()

    def _report(self, ok: bool, results: dict[str, Any]) -> None:
        if ok:
            self.results = results
            self.succeeded.emit(results)
            if self.on_done is not None:
                try:
                    self.on_done(results)
                except Exception as exc:  # noqa: BLE001 (UI boundary)
                    self._bar(f"the run finished but opening its result failed: {exc}",
                              Qgis.MessageLevel.Critical)
            return
        if self.feedback.isCanceled():
            self.was_cancelled = True
            self.failed.emit("")
            self._bar(f"{self.description}: cancelled; no bundle was written",
                      Qgis.MessageLevel.Info)
            return
        self.message = (self.feedback.errors[-1] if self.feedback.errors
                        else "the worker stopped without a result")
        QgsMessageLog.logMessage(self.message, LOG_TAG, Qgis.MessageLevel.Critical)
        self.failed.emit(self.message)
        self._bar(self.message, Qgis.MessageLevel.Critical)

    def _bar(self, text: str, level: Any) -> None:
        push_message(self.iface, text, level)
