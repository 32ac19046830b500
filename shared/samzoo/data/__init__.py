"""Dataset preparation, datalists, synthetic demo data and checked NIfTI input/output."""
