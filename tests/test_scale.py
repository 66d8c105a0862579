"""Scale by design: a group term costs O(n q) memory, never O(n x levels)."""

import numpy as np
import pandas as pd

import multilevel as ml


def test_million_rows_ten_thousand_groups_fit_in_memory():
    n, levels = 1_000_000, 10_000
    rng = np.random.default_rng(0)
    data = pd.DataFrame(
        {"y": rng.normal(size=n), "x": rng.normal(size=n), "g": rng.integers(0, levels, n)}
    )
    model = ml.Model("y ~ x + (1 + x | g)", data)
    design = model.design
    block = design.blocks[0]
    assert len(block.levels) == levels
    assert block.Z.shape == (n, 2) and block.codes.shape == (n,)
    total = design.X.nbytes + design.y.nbytes + block.Z.nbytes + block.codes.nbytes
    # X (n x 2) + y + Z (n x 2) in float64 and int32 codes: 44 MB. A dense n x levels
    # indicator matrix would need 80 GB.
    assert total < 50e6, total
