"""Fitting the mock to a real upstream: `ragload probe-upstream` (probe.py) and the model fit (fit.py)."""
