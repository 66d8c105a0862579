"""The NUTS progress bar: one bar over every chain's transitions, from the chains'
threads, with the count of divergent transitions after warmup in its postfix.

The compiled sampler loop is replaced by a stand-in (no compilation), and the bar by a
recorder, so the counts are exact."""

import threading

import numpy as np
import pytest

from multilevel.inference import nuts

CHAINS, WARMUP, DRAWS = 2, 30, 50
SETTINGS = nuts.NutsSettings(chains=CHAINS, warmup=WARMUP, draws=DRAWS, chunk=20)
STATE = {"z": np.zeros((CHAINS, 3), np.float32)}  # one row per chain


def divergent_loop(state, count, model_args):
    """Every transition divergent, in warmup too: only the ones after warmup count."""
    length = SETTINGS.chunk
    values = {"mu": np.zeros(length, np.float32)}
    stats = (np.ones(length, bool), *(np.zeros(length, np.float32) for _ in range(5)))
    return state, (values, stats)


class RecordingBar:
    def __init__(self):
        self.updates, self.postfixes, self.closed = [], [], False
        self.threads = set()

    def update(self, n=1):
        self.updates.append(int(n))
        self.threads.add(threading.current_thread().name)

    def set_postfix_str(self, text, refresh=True):
        self.postfixes.append(text)

    def close(self):
        self.closed = True


@pytest.mark.parametrize("workers", [1, 2])
def test_bar_counts_every_transition_and_the_divergences_after_warmup(monkeypatch, workers):
    monkeypatch.setattr(nuts, "_chain_workers", lambda chains: workers)
    bar, asked = RecordingBar(), {}

    def fake_progress_bar(total, desc, **kwargs):
        asked.update(total=total, desc=desc, **kwargs)
        return bar

    monkeypatch.setattr(nuts, "progress_bar", fake_progress_bar)
    values, stats, _ = nuts._run_chunks(divergent_loop, STATE, (), SETTINGS, progress=True)
    assert values["mu"].shape == (CHAINS, DRAWS)
    assert asked == {
        "total": CHAINS * (WARMUP + DRAWS),
        "desc": "NUTS",
        "unit": "it",
        "show": True,
        "threads": True,  # updated from the chains' threads
    }
    assert sum(bar.updates) == CHAINS * (WARMUP + DRAWS)
    # Warmup divergences are not counted: all CHAINS * DRAWS sampling transitions are.
    assert bar.postfixes[-1] == f"{CHAINS * DRAWS} divergences"
    counts = [int(p.split()[0]) for p in bar.postfixes]
    assert counts == sorted(counts)  # a newer, larger count is never overwritten
    assert bar.closed
    if workers == 2:
        assert all(name.startswith("multilevel-chain") for name in bar.threads)


def test_no_bar_asked_for_gives_a_silent_one(monkeypatch, capsys):
    """progress=False on a terminal still draws nothing (the bar is asked with show=False)."""
    monkeypatch.setattr("multilevel.progress.on_terminal", lambda: True)
    nuts._run_chunks(divergent_loop, STATE, (), SETTINGS, progress=False)
    assert capsys.readouterr().err == ""
