"""Gradient lab: exact gradients (`pgrad.lab.exact`), estimator studies, reports and plots."""
