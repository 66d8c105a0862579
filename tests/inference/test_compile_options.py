"""``compile.options``: a sampler's own XLA options over the package's, inside a block only."""

import jax

from multilevel.inference import compile as compiling


def test_options_override_inside_the_block_and_are_restored():
    if jax.default_backend() != "cpu":  # the options are the CPU compiler's
        assert compiling.compiler_options() == {}
        return
    assert compiling.compiler_options() == compiling.COMPILER_OPTIONS
    with compiling.options(xla_cpu_use_fusion_emitters=True):
        assert compiling.compiler_options()["xla_cpu_use_fusion_emitters"] is True
        with compiling.options():  # nested, nothing new: the outer override stays
            assert compiling.compiler_options()["xla_cpu_use_fusion_emitters"] is True
    assert compiling.compiler_options() == compiling.COMPILER_OPTIONS
