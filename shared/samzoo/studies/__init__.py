"""Experiment runners that sweep a method's settings and write result tables."""
