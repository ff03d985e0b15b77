"""Helpers every study shares: the slope fit, result-file naming, figures and CLI flags."""
