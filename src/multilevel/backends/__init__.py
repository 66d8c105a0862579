"""Backends: a ModelSpec compiled to a model function of a probabilistic programming library."""
