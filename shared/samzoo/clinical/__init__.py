"""Clinical read-outs of cardiac segmentations: volumes, EF and myocardial mass, checked against the ground truth.

:func:`clinical_folder` reads out a folder of predicted masks (``samzoo clinical``); bundles attach
:class:`samzoo.engine.ClinicalReport` to their evaluator. See docs/clinical.md.
"""

from .agreement import bland_altman, frame_agreement
from .report import clinical_folder, clinical_readout, summarize_clinical, write_clinical_report
from .ring import Ring, cavity_from_ring
from .stacks import PatientStack, patient_stacks
from .volumes import Units, disc_volumes, stack_areas

__all__ = [
    "PatientStack",
    "Ring",
    "Units",
    "bland_altman",
    "cavity_from_ring",
    "clinical_folder",
    "clinical_readout",
    "disc_volumes",
    "frame_agreement",
    "patient_stacks",
    "stack_areas",
    "summarize_clinical",
    "write_clinical_report",
]
