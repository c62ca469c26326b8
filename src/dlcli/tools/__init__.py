"""Calculators and helpers: conv-shape, param-count, lr-find."""
