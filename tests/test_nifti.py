"""Output naming of NIfTI inputs."""

from __future__ import annotations

import pytest
from samzoo.data.nifti import check_distinct_stems, nifti_stem
from samzoo.errors import DataError


@pytest.mark.parametrize(
    ("path", "stem"), [("a/cine.nii.gz", "cine"), ("ct.nii", "ct"), ("scan.v2.nii.gz", "scan.v2"), ("x.mha", "x")]
)
def test_nifti_stem_drops_only_the_nifti_suffix(path, stem):
    assert nifti_stem(path) == stem


def test_inputs_whose_outputs_would_collide_are_refused_naming_both():
    check_distinct_stems(["s01/ct.nii.gz", "s02/mr.nii.gz", "s02/ct_2.nii"])
    with pytest.raises(DataError, match=r"s02/ct\.nii: has the same name as s01/ct\.nii\.gz"):
        check_distinct_stems(["s01/ct.nii.gz", "s02/ct.nii"])
