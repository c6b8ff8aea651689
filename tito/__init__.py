"""tito: the command-line companion of the tinytorch course.

tito reads the module list from ``modules/manifest.toml`` (the only place that lists the
modules), exports notebooks into the ``tinytorch`` package with nbdev, runs each module's tests
and checkpoint, and reports where every module stands.
"""

__version__ = "0.1.0"

from .errors import TitoError, UnknownModuleError, ManifestError  # noqa: E402

__all__ = ["TitoError", "UnknownModuleError", "ManifestError", "__version__"]
