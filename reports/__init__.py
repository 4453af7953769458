"""Turns a run folder into plots and a self-contained report; never runs load."""
