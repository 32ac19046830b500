"""samzoo: MONAI bundles that adapt Segment Anything to medical image segmentation when labels are scarce."""

from .errors import install as _install_excepthook

__version__ = "0.1.0"

# Every bundle config imports samzoo, so each ``python -m monai.bundle run`` that fails ends with its cause.
_install_excepthook()
