"""samzoo: MONAI bundles that adapt Segment Anything to medical image segmentation when labels are scarce."""

__version__ = "0.1.0"
