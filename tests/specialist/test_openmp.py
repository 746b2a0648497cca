"""How OpenMP threads wait: the defaults every entry point sets, and what the engine reads from them."""

from __future__ import annotations

import os

import pytest

from specialist.openmp import SPIN_COUNT, configure_openmp, threads_sleep, threads_spin_first


def test_defaults_spin_briefly_then_sleep_and_never_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    configure_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert os.environ["GOMP_SPINCOUNT"] == str(SPIN_COUNT)
    assert threads_sleep() and threads_spin_first()
    monkeypatch.setenv("GOMP_SPINCOUNT", "0")  # set by the user: kept
    configure_openmp()
    assert os.environ["GOMP_SPINCOUNT"] == "0"
    assert threads_sleep() and not threads_spin_first()


@pytest.mark.parametrize(
    ("policy", "spin", "sleeps", "spins_first"),
    [
        ("PASSIVE", None, True, False),
        ("passive", "200000", True, True),
        ("ACTIVE", None, False, True),
        ("ACTIVE", "1000", True, True),
        (None, None, True, True),  # libgomp's own default: ~3 ms of spinning, then sleep
        ("PASSIVE", "infinity", False, True),
        ("PASSIVE", "lots", True, False),  # unreadable: libgomp ignores it, and so does this
    ],
)
def test_what_the_variables_mean(
    monkeypatch: pytest.MonkeyPatch, policy: str | None, spin: str | None, sleeps: bool, spins_first: bool
) -> None:
    for name, value in (("OMP_WAIT_POLICY", policy), ("GOMP_SPINCOUNT", spin)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert threads_sleep() is sleeps
    assert threads_spin_first() is spins_first
