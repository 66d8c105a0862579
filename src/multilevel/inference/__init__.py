"""Samplers that run a backend model and return draws with sampler statistics."""
