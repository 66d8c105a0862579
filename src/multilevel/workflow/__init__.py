"""The workflow that teaches and checks a hierarchical model: pooling comparison, prior
predictive checks, fake-data recovery and simulation-based calibration. It uses Model and
Fit as a user would and never reaches into backend internals."""
