"""Point and box prompts sampled from label maps, as in the sparse-annotation thesis (§4.2.3, §5.5)."""

from .sampling import (
    ClassPrompts,
    bounding_box,
    has_classes,
    sample_positive_points,
    sample_prompts,
)

__all__ = ["ClassPrompts", "bounding_box", "has_classes", "sample_positive_points", "sample_prompts"]
