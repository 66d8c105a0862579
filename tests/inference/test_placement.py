"""Small models sample on the CPU even where JAX's default device is an accelerator."""

import jax
import numpy as np

from multilevel.inference import placement


def test_small_work_on_an_accelerator_goes_to_the_cpu():
    assert placement.device_for(1_000, backend="gpu") == jax.devices("cpu")[0]


def test_large_work_keeps_the_default_device():
    assert placement.device_for(placement.GPU_MIN_VALUES, backend="gpu") is None


def test_cpu_only_machines_are_left_alone():
    assert placement.device_for(1_000, backend="cpu") is None
    with placement.placed(1_000) as device:  # this machine: CPU only
        assert device == "cpu"


def test_work_counts_every_number_a_gradient_reads():
    data = {"X": np.zeros((10, 3)), "y": np.zeros(10), "offset": None, "Z": (np.zeros((10, 2)),)}
    assert placement.work_of(data) == 30 + 10 + 20
