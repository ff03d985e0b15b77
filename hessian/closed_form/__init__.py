"""Closed-form Hessian blocks of single-layer self-attention (Ormaniec, Dangel & Singh, 2025)."""
