"""Where a fit samples: small models on the CPU even when JAX's default device is a GPU.

One NUTS transition is a long chain of small dependent operations; on a GPU each one
costs a kernel launch, so a model whose gradient touches a few thousand numbers samples
far slower there than on one CPU core (NumPyro's own advice for small models). A GPU
pays off only when one gradient pass is large: many rows for the joint sampler, many
groups for the collapsed one. ``fit.info["device"]`` says where a fit ran.

Not exercised on a GPU by the test suite (CI has none): the decision is tested, and on a
CPU-only machine ``placed`` changes nothing.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np

#: Numbers one gradient pass reads (data arrays or sufficient statistics) from which
#: JAX's default device, when it is an accelerator, is kept.
GPU_MIN_VALUES = 10_000_000


def work_of(arrays) -> int:
    """How many numbers one gradient pass reads: the total size of the model's data."""
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(arrays)))


def device_for(work: int, backend: str | None = None):
    """None (JAX's default device) on a CPU-only machine or for large work on an
    accelerator; the first CPU device for small work on an accelerator."""
    backend = backend or jax.default_backend()
    if backend == "cpu" or work >= GPU_MIN_VALUES:
        return None
    return jax.devices("cpu")[0]


@contextlib.contextmanager
def placed(work: int):
    """Run the enclosed sampling on ``device_for(work)``; yields the device's name."""
    device = device_for(work)
    if device is None:
        yield jax.default_backend()
        return
    with jax.default_device(device):
        yield "cpu (model too small to gain from the accelerator)"
