"""What the explorer writes: bundle titles, selection counts, axis labels, hover text.

Plain functions of the open bundles (no Qt at run time), so the words are tested and
changed in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.figures import format_number
from .coverage import UNKNOWN_TEXT, review_hint

if TYPE_CHECKING:  # types only: the session module loads QGIS
    from .session import BundleSession


def score_name(has_labels: bool) -> str:
    """What a bundle's quality score is: IoU, or estimated IoU without labels."""
    return "IoU" if has_labels else "estimated IoU"


def axis_labels(explained_variance: Sequence[float]) -> tuple[str, str]:
    """PC1 / PC2 axis titles with the explained variance when it is known."""
    x, y = (f"PC{i + 1}" + (f" ({explained_variance[i] * 100:.1f} % of variance)"
                            if i < len(explained_variance) else "") for i in range(2))
    return x, y


def bundles_title(sessions: Sequence[BundleSession]) -> str:
    """The dock's title line: the open bundles, the first defining the plane."""
    if not sessions:
        return "no bundle open"
    names = [f"{s.name} ({s.kind})" for s in sessions]
    return "bundle: " + ", ".join(names) + (
        "  (the first defines the plane; the others are drawn as squares)"
        if len(names) > 1 else "")


def selection_stats(sessions: Sequence[BundleSession]) -> str:
    """Count and mean score of the selection, per bundle."""
    if not sessions:
        return "selected: 0"
    parts = []
    for s in sessions:
        count, mean = s.summary()
        mean_txt = format_number(mean, missing="-")
        prefix = f"{s.name}: " if len(sessions) > 1 else ""
        unknown = s.unknown_selected()
        note = (f" ({unknown} unknown, beyond the reference's coverage: not in the mean)"
                if unknown else "")
        parts.append(f"{prefix}{count} of {s.n} selected, mean {score_name(s.has_labels)} "
                     f"{mean_txt}{note}")
    return " | ".join(parts)


def selected_title(n: int) -> str:
    """Gallery title of a selection of `n` patches."""
    return f"{n} selected patch{'es' if n != 1 else ''}"


def cluster_title(cluster: int, size: int) -> str:
    """Gallery title of a cluster's representatives."""
    name = "noise" if cluster < 0 else f"cluster {cluster}"
    return f"{name}: {size} patches, representatives"


def reference_warning(s: BundleSession, base: BundleSession) -> str | None:
    """A warning when `s` was estimated against another bundle than `base`, else None."""
    ref = s.bundle.manifest.get("reference")
    if not ref:
        return None
    p = Path(str(ref))
    p = (p if p.is_absolute() else s.bundle.path / p).resolve()
    b = base.bundle.path.resolve()
    if p == b or p.name == b.name:  # same name: the reference, copied elsewhere
        return None
    return (f"{s.name} was estimated against {p.name}, not {base.bundle.path.name}: its "
            "points lie in another latent plane; open it together with its own reference "
            "to compare them")


def tooltip_text(s: BundleSession, i: int) -> str:
    """Hover text of patch `i` of a bundle: id, image, region, scores, cluster."""
    c = s.columns

    def value(col: str) -> float | None:
        v = c.get(col)
        return float(v[i]) if v is not None else None

    def fmt(col: str) -> str:
        return format_number(value(col), missing="-")

    cl = c.get("cluster")
    cl_txt = str(int(cl[i])) if cl is not None and np.isfinite(cl[i]) else "-"
    est = UNKNOWN_TEXT if s.unknown[i] else fmt("est_iou")
    lines = [f"patch {i} ({s.name})", f"image: {c['image'][i]}",
             f"region: {c['region'][i]}", f"IoU: {fmt('iou')}",
             f"estimated IoU: {est}", f"cluster: {cl_txt}"]
    if s.has("novelty"):
        lines.append(f"novelty: {fmt('novelty')}")
    if s.has("label_error"):
        score = value("label_error")
        lines.append(f"label disagreement: {format_number(score, percent=True, missing='-')}"
                     " % of pixels")
        hint = review_hint(value("conf_fp_frac"), value("conf_fn_frac"),
                           float("nan") if score is None else score)
        if hint:
            lines.append(hint)
    return "\n".join(lines)
