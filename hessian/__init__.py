"""Curvature of self-attention layers: exact Hessian blocks, Gauss-Newton split, estimators."""
