"""How OpenMP threads wait, for every process that runs torch or llama.cpp (both load the same libgomp).

libgomp reads these variables once, when it is loaded, so each entry point (the CLI, the benchmarks, the
test suite, the embedder) calls `configure_openmp()` before it imports torch or llama.cpp. Values already in
the environment win.
"""

from __future__ import annotations

import os
from pathlib import Path

# libgomp spins about 100,000 times per millisecond: an idle thread spins ~10 ms, then sleeps.
SPIN_COUNT = 1_000_000
_INFINITE = 2**64 - 1


def configure_openmp() -> None:
    """Idle OpenMP threads spin ~10 ms, then sleep.

    - *Sleep* (`OMP_WAIT_POLICY=PASSIVE`): a thread that spins for good holds a core of this 2-core machine
      for nothing; next to a training job one model call took 86 s instead of 4 s.
    - *...after a short spin* (`GOMP_SPINCOUNT`): llama.cpp starts one parallel region per decoding step,
      about a millisecond apart. A thread that sleeps at once is woken for every step, and 2 decoding
      threads were then slower than 1; spinning across those gaps made 2 threads ~30% faster (docs/engine.md).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("GOMP_SPINCOUNT", str(SPIN_COUNT))


def libgomp_loaded() -> bool:
    """Whether this process has loaded libgomp already (then changing the variables does nothing)."""
    maps = Path("/proc/self/maps")
    return maps.exists() and "libgomp" in maps.read_text()


def threads_sleep() -> bool:
    """Whether idle OpenMP threads sleep in the end (a wait policy other than ACTIVE, or a bounded spin)."""
    count = _spin_count()
    if count is not None:
        return count < _INFINITE
    return os.environ.get("OMP_WAIT_POLICY", "").upper() != "ACTIVE"


def threads_spin_first() -> bool:
    """Whether idle OpenMP threads spin before they sleep (default policy, ACTIVE, or a spin count > 0)."""
    count = _spin_count()
    if count is not None:
        return count > 0
    return os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"


def _spin_count() -> int | None:
    raw = os.environ.get("GOMP_SPINCOUNT", "").strip().lower()
    if not raw:
        return None
    if raw in ("infinite", "infinity"):
        return _INFINITE
    try:
        return int(raw)
    except ValueError:
        return None
