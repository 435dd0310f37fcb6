"""Exception hierarchy: one root, subclasses that mix in the builtin they refine.

Messages name the bad value, what was expected and what to do, in one line.
"""

from __future__ import annotations


class SegexplainError(Exception):
    """Root of every error segexplain raises on purpose."""


class InputError(SegexplainError, ValueError):
    """Input data that cannot be used as given."""


class UnreadableFileError(SegexplainError, OSError):
    """A file that does not exist or is not what it claims to be."""


class MissingCRSError(InputError):
    """A raster or vector without a coordinate reference system."""


class GridMismatchError(InputError):
    """Image and label rasters that are not on the same pixel grid."""


class LabelValueError(InputError):
    """Label values that are not a building mask."""


class NoOverlapError(InputError):
    """Vector labels that do not overlap the image."""


class EmptyInputError(InputError):
    """No images, no pixels, or nothing but nodata."""


class MissingLabelError(InputError):
    """An image without the label file that the task needs."""


class NoValidPatchError(EmptyInputError):
    """Imagery without a single patch that has enough valid (not nodata) pixels."""


class ConfigurationError(SegexplainError, ValueError):
    """Parameters that do not fit together (patch size, stride, bands...)."""


class ModelLoadError(SegexplainError, ValueError):
    """A model folder or checkpoint that does not fit the expected architecture."""


class BundleError(SegexplainError, ValueError):
    """An analysis bundle that cannot be read."""


class IncompleteBundleError(BundleError):
    """A bundle whose write never finished (killed run, copy in progress)."""


class CancelledError(SegexplainError, RuntimeError):
    """The run was cancelled by the user."""


class WorkerError(SegexplainError, RuntimeError):
    """The worker process (the core command line started by the plugin) failed."""


class DeviceError(SegexplainError, RuntimeError):
    """A device that was asked for (a CUDA GPU) and that this machine does not have."""


class ClusterError(SegexplainError, ConnectionError):
    """A Dask cluster that cannot be reached, or whose workers keep failing a tile."""


class DependencyError(SegexplainError, ImportError):
    """A package the command needs is not installed in this Python (names what to install)."""
