"""Bundle archives (:mod:`.package`) and MONAI's offline bundle checks (:mod:`.verify`)."""

from .package import bundle_dir, package_bundle
from .verify import BundleCheckError, verify_bundle

__all__ = ["BundleCheckError", "bundle_dir", "package_bundle", "verify_bundle"]
