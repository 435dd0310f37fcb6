"""The one UI boundary: unexpected errors become a message in the QGIS message bar."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from qgis.core import Qgis, QgsMessageLog

from ..core.errors import SegexplainError

F = TypeVar("F", bound=Callable[..., Any])
TITLE = "segexplain"


def one_line(exc: BaseException) -> str:
    """Return the message of an error on one line (type name added for unexpected ones)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, SegexplainError | OSError):
        return text
    return f"unexpected {type(exc).__name__}: {text}"


def show_error(iface: Any, exc: BaseException) -> None:
    """Message bar (critical) plus the full message in the log panel."""
    msg = one_line(exc)
    QgsMessageLog.logMessage(msg, TITLE, Qgis.MessageLevel.Critical)
    if iface is not None:
        iface.messageBar().pushMessage(TITLE, msg, level=Qgis.MessageLevel.Critical, duration=10)


def show_info(iface: Any, text: str) -> None:
    """Show a short informational message."""
    if iface is not None:
        iface.messageBar().pushMessage(TITLE, text, level=Qgis.MessageLevel.Info, duration=5)


def guarded(method: F) -> F:
    """Wrap a slot of an object with an `iface` attribute: errors go to the message bar."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # the UI boundary: never let an error escape into Qt
            show_error(getattr(self, "iface", None), exc)
            return None

    return wrapper  # type: ignore[return-value]
