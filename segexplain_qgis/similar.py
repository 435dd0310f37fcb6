"""Similar patches: a clicked patch and its k nearest in latent space, across open bundles.

"Where else does the model see this?" A click on a point of the scatter, or a single
footprint selected on the map, selects that patch and its `k` nearest patches in every
open bundle that shares its latent space (`core.bundle.similarity`: the whitened PCA
space novelty is measured in; bundles of another space are not searched and named).
The gallery shows them nearest first. The search index reads each bundle's latent
coordinates once, at the first search after the open bundles change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from qgis.PyQt.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSpinBox, QWidget

from ..core.bundle.similarity import SimilarityIndex

if TYPE_CHECKING:  # types only
    from .selection import Selection
    from .session import BundleSession

#: similar patches selected with a clicked one, unless the spin box says otherwise
DEFAULT_K = 10
MAX_K = 1000
HELP = ("a click on a point selects it and its k most similar patches (nearest in the "
        "latent space) in every open bundle of that space; shift-click adds")

Found = list[tuple[str, int, float]]


class SimilarPatches:
    """Nearest patches across the open bundles (one index per set of open bundles)."""

    def __init__(self) -> None:
        self._index: SimilarityIndex | None = None
        self._keys: tuple[str, ...] = ()

    def index(self, sessions: Sequence[BundleSession]) -> SimilarityIndex:
        """The index over `sessions` (made again when the open bundles changed)."""
        keys = tuple(s.key for s in sessions)
        if self._index is None or keys != self._keys:
            self._index = SimilarityIndex([s.bundle for s in sessions])
            self._keys = keys
        return self._index

    def find(self, sessions: Sequence[BundleSession], key: str, pid: int, k: int) -> Found:
        """(bundle key, patch id, distance): the patch itself first, then its `k` nearest."""
        keys = [s.key for s in sessions]
        near = self.index(sessions).nearest(keys.index(key), int(pid), int(k))
        return [(key, int(pid), 0.0)] + [(keys[n.bundle], n.patch_id, n.distance)
                                         for n in near]

    def other_spaces(self, sessions: Sequence[BundleSession], key: str) -> list[str]:
        """Names of the open bundles of another latent space than bundle `key` (not searched)."""
        index = self.index(sessions)
        own = index.space_ids[[s.key for s in sessions].index(key)]
        return [s.name for s, sid in zip(sessions, index.space_ids, strict=True) if sid != own]

    def close(self) -> None:
        """Drop the index (the bundles' coordinates)."""
        self._index, self._keys = None, ()


def found_masks(found: Found, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """Boolean mask per bundle key (of `sizes[key]` patches) of the found patches."""
    masks = {key: np.zeros(n, dtype=bool) for key, n in sizes.items()}
    for key, pid, _ in found:
        masks[key][pid] = True
    return masks


def similar_title(name: str, pid: int, found: Found, skipped: Sequence[str]) -> str:
    """Gallery title of a similarity search."""
    n = len(found) - 1
    bundles = len({key for key, _, _ in found})
    text = (f"patch {pid} ({name}) and its {n} most similar patch{'es' if n != 1 else ''}"
            f", nearest first ({bundles} bundle{'s' if bundles != 1 else ''})")
    if skipped:
        text += f"; not searched (another latent space): {', '.join(skipped)}"
    return text


class SimilarControls(QWidget):
    """k and whether a single footprint selected on the map starts a search."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.k = QSpinBox()
        self.k.setObjectName("similarK")
        self.k.setRange(1, MAX_K)
        self.k.setValue(DEFAULT_K)
        self.k.setToolTip(HELP)
        self.on_map = QCheckBox("on the map too")
        self.on_map.setToolTip("selecting a single footprint on the map (select tool) also "
                               "selects its k most similar patches")
        self.on_map.setChecked(True)
        label = QLabel("click a point: it + k similar, k")
        label.setToolTip(HELP)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(label)
        lay.addWidget(self.k)
        lay.addWidget(self.on_map)
        lay.addStretch(1)


class SimilarSearch:
    """The explorer's similarity search: the controls, the index, and the selection."""

    def __init__(self) -> None:
        self.patches = SimilarPatches()
        self.controls = SimilarControls()

    def from_map(self, selection: Selection) -> bool:
        """Whether a selection made on the map starts a search (one footprint, box ticked)."""
        return self.controls.on_map.isChecked() and selection.count == 1

    def select(self, sessions: Sequence[BundleSession], key: str, pid: int,
               mode: str = "replace") -> tuple[Found, str]:
        """Merge patch `pid` of bundle `key` and its k nearest into the selections.

        Returns what was found (nearest first) and the gallery title.
        """
        found = self.patches.find(sessions, key, pid, self.controls.k.value())
        masks = found_masks(found, {s.key: s.n for s in sessions})
        for s in sessions:
            s.selection.merge(masks[s.key], mode)
        name = next(s.name for s in sessions if s.key == key)
        return found, similar_title(name, pid, found, self.patches.other_spaces(sessions, key))

    def close(self) -> None:
        """Drop the index."""
        self.patches.close()
