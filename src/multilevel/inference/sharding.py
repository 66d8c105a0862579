"""One chain's rows split across devices: several CPU devices, several GPUs, several hosts.

The joint sampler's gradient is a sum over rows (each row's log-likelihood and its
gradient with respect to the population and group effects it reads). With the row-wise
data arrays (``backends.padding.ROW_KEYS``) placed with a ``NamedSharding`` along their
row axis over a 1-D mesh of devices, and everything else (priors, the chain's state)
replicated, XLA partitions the compiled NUTS programs itself: each device computes its
rows' partial sums and one all-reduce per gradient adds them (for ``y ~ x + (1 + x | g)``,
the coefficients' gradient and the (groups, 2) scatter-add of the effects' gradient in
one all-reduce). The tree building, step-size and mass-matrix adaptation are small and
run replicated on every device, so every device holds the same chain.

When (``plan``): several devices of the kind the fit runs on (``placement``), fewer
chains than devices, and data large enough that splitting its rows saves more than an
all-reduce per gradient costs (``SHARD_MIN_VALUES``); or always/never when the user
asks (``Model.fit(shard_rows=True / False)``). On a machine with one device of that kind
(a plain CPU process) nothing changes.

CPU devices: JAX makes one CPU device per process unless told otherwise before it is
imported: ``XLA_FLAGS=--xla_force_host_platform_device_count=N``.

Several hosts: ``jax.distributed.initialize()`` in every process before anything runs
on a device; ``jax.devices()`` then lists every host's devices, and the mesh here spans
them all (``placed`` builds each array from its host copy with
``jax.make_array_from_callback``, which puts on each process's devices only their rows).
Every process builds the same ``Model`` from the same data and calls ``fit`` with the
same arguments; the chains then run one after another (``serial_chains``), so that every
process launches the same programs in the same order. Tested on one machine only: two
processes with one CPU device each, joined over TCP (gloo), draw exactly what one process
with two devices draws (``tests/inference/test_sharding.py``, slow); never across real
hosts or GPUs.

Same seed, same draws? Not exactly: a device's partial sum adds its rows in another
order than one device adds them all, so the potential and gradient differ in the last
bits (float32: about 1e-7 relative), and a NUTS trajectory, chaotic in its start, then
takes another path after some transitions. The posterior is the same; the test compares
sharded and unsharded log densities and gradients to rounding, and posteriors within
Monte Carlo error.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from multilevel.errors import OptionError
from multilevel.inference import placement

ROW_AXIS = "rows"

#: Numbers one gradient pass reads (``placement.work_of``) from which ``plan`` splits a
#: chain's rows across devices of that platform by default. CPU: measured with
#: ``benchmarks/sharding.py`` (2 CPU devices on 2 cores, bernoulli ``y ~ x + (1 + x |
#: g)``: see docs/benchmarks.md); below it the all-reduce per gradient and the
#: partitions' rendezvous cost more than half the rows save. Accelerators: not measured
#: (no machine with several GPUs here); a GPU's gradient over fewer numbers than this is
#: bound by kernel launches, not by rows, so splitting its rows gains little.
SHARD_MIN_VALUES = {"cpu": 1_000_000, "accelerator": 4 * placement.GPU_MIN_VALUES}


@dataclass(frozen=True, eq=False)
class RowSharding:
    """A 1-D mesh of devices along the row axis: how a chain's inputs are placed."""

    mesh: Mesh

    @property
    def devices(self) -> int:
        return int(self.mesh.devices.size)

    @property
    def processes(self) -> int:
        """Hosts (JAX processes) whose devices the mesh spans."""
        return len({d.process_index for d in self.mesh.devices.flat})

    @property
    def rows(self) -> NamedSharding:
        """Axis 0 split evenly across the devices."""
        return NamedSharding(self.mesh, PartitionSpec(ROW_AXIS))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def key(self) -> tuple:
        """What a compiled program depends on: the devices, in order."""
        return (ROW_AXIS, tuple(d.id for d in self.mesh.devices.flat))

    @property
    def label(self) -> str:
        """``fit.info["device"]``: e.g. "cpu x2 (rows sharded)"."""
        platform = self.mesh.devices.flat[0].platform
        hosts = f" on {self.processes} hosts" if self.processes > 1 else ""
        return f"{platform} x{self.devices}{hosts} (rows sharded)"

    def placed(self, model_args: tuple, row_keys) -> tuple:
        """``(data, prior)`` as global arrays: ``data``'s values under ``row_keys`` (an
        array, or a tuple or dict of arrays, with rows on axis 0 and a row count that the
        number of devices divides: ``padding.pad_data(multiple=)``) split along the rows,
        every other array replicated."""
        data, *rest = model_args
        placed = {
            key: jax.tree.map(
                lambda x, key=key: _put(x, self.rows if key in row_keys else self.replicated), value
            )
            for key, value in data.items()
        }
        return (placed, *jax.tree.map(lambda x: _put(x, self.replicated), tuple(rest)))

    @property
    def serial_chains(self) -> bool:
        """Chains run one at a time, not side by side on threads, when the mesh spans
        several processes: every process must launch the same programs in the same order."""
        return self.processes > 1

    def shardings(self, tree):
        """Each placed array's sharding (the compiled programs' input shardings)."""
        return jax.tree.map(lambda x: x.sharding, tree)


def _put(value, sharding: NamedSharding) -> jax.Array:
    """``value`` as a global array: each device (of any process) gets its slice from this
    process's copy; in the precision JAX runs in (float64 only under ``enable_x64``)."""
    host = np.asarray(value)
    host = host.astype(jax.dtypes.canonicalize_dtype(host.dtype), copy=False)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def devices_for(work: int) -> list:
    """Every device (of every process) of the platform a fit of ``work`` runs on:
    JAX's default backend, or the CPU where ``placement`` keeps small work."""
    device = placement.device_for(work)
    return jax.devices() if device is None else jax.devices(device.platform)


def check_shard_rows(value: object) -> bool | None:
    """``Model.fit(shard_rows=)``: None (decide from the machine), True or False."""
    if value is not None and not isinstance(value, bool):
        raise OptionError(
            f"shard_rows must be None (split rows across devices where that is faster), "
            f"True or False, got {value!r}."
        )
    return value


def plan(work: int, chains: int, shard_rows: bool | None = None) -> RowSharding | None:
    """How a joint fit of ``work`` numbers per gradient with ``chains`` chains places
    its rows: a ``RowSharding`` over every device of its platform, or None (one device).

    ``shard_rows=None``: sharded when there are several devices, fewer chains than
    devices and at least ``SHARD_MIN_VALUES`` numbers; True: sharded whenever there are
    several devices (else an ``OptionError`` saying how to get them); False: never."""
    if check_shard_rows(shard_rows) is False:
        return None
    devices = devices_for(work)
    if len(devices) < 2:
        if shard_rows:
            raise OptionError(
                f"shard_rows=True needs several devices, and JAX sees one "
                f"({devices[0].platform}). On a CPU, start Python with "
                f"XLA_FLAGS=--xla_force_host_platform_device_count=N in the environment "
                f"(read when JAX is imported); across hosts, call jax.distributed.initialize() "
                f"first (docs/several_devices.md)."
            )
        return None
    if shard_rows is None:
        kind = "cpu" if devices[0].platform == "cpu" else "accelerator"
        if chains >= len(devices) or work < SHARD_MIN_VALUES[kind]:
            return None
    return RowSharding(Mesh(np.array(devices), (ROW_AXIS,)))
