"""Fixtures of the agent tests: a real SQLite store filled by the seeded generator, a throwaway Postgres."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.store.database import RetailDatabase
from agent.store.seed import generate_demo_data


@pytest.fixture
def db(tmp_path: Path) -> RetailDatabase:
    """A seeded demo store on disk."""
    store = RetailDatabase(tmp_path / "store.sqlite")
    store.replace_all(generate_demo_data(7, n_users=30, n_orders=90))
    return store


@pytest.fixture
def find_order(db: RetailDatabase) -> Callable[..., dict[str, Any]]:
    """The first order with a status (and optionally a predicate)."""

    def find(status: str, where: Callable[[dict[str, Any]], bool] = lambda o: True) -> dict[str, Any]:
        for order in db.export()["orders"].values():
            if order["status"] == status and where(order):
                return dict(order)
        raise LookupError(status)

    return find


@pytest.fixture(scope="session")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The real knowledge base (embedded Qdrant + real embedder) with the demo policies ingested."""
    from ingest import Ingestor, demo_policy_dir
    from retrieval import RetrievalSettings, open_knowledge_base

    base = open_knowledge_base(RetrievalSettings(data_dir=tmp_path_factory.mktemp("kb")))
    Ingestor(base).ingest_path(demo_policy_dir())
    return base


@pytest.fixture
def make_agent(tmp_path: Path, db: RetailDatabase, kb: Any) -> Callable[..., Any]:
    """Build a SupportAgent over the seeded store and real KB; keyword arguments override AgentSettings."""
    from agent.runtime import build_agent
    from agent.settings import AgentSettings

    def make(model: Any, **overrides: Any) -> Any:
        overrides.setdefault("refund_approval_threshold", 100_000.0)
        chosen_kb = overrides.pop("kb", kb)
        settings = AgentSettings(
            store_path=tmp_path / "store.sqlite", checkpoint_path=tmp_path / "checkpoints.sqlite", **overrides
        )
        return build_agent(settings=settings, model=model, kb=chosen_kb, store=db)

    return make


# Trust auth over a private socket, C locale, no fsync: a disposable cluster that starts in a second.
INITDB_FLAGS = ("-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")


def _postgres_bin_dir() -> Path | None:
    """Where initdb/pg_ctl live: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (not on PATH)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    installed = Path("/usr/lib/postgresql").glob("*/bin/initdb")
    debian = [p.parent for p in installed if p.parents[1].name.isdigit()]
    return max(debian, key=lambda d: int(d.parent.name), default=None)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway Postgres server (initdb in a temp dir, unix socket only), stopped after the session."""
    bin_dir = _postgres_bin_dir()
    if bin_dir is None:
        reason = (
            "initdb and pg_ctl (the Postgres server) are missing: run .ci/run (apt-get install postgresql)"
        )
        if os.environ.get("SPECIALIST_TESTS_ALLOW_NO_POSTGRES") == "1":
            pytest.skip(reason)
        pytest.fail(f"{reason} (or set SPECIALIST_TESTS_ALLOW_NO_POSTGRES=1 to skip these tests)")
    # Postgres refuses to run as root: drop to the package's postgres user (or nobody) for the server.
    user: str | None = None
    if os.geteuid() == 0:
        user = next(u for u in ("postgres", "nobody") if _has_user(u))
    # A short path under /tmp: the socket path must stay under ~100 bytes and be reachable by `user`.
    base = Path(tempfile.mkdtemp(prefix="specialist-pg-"))
    data, log = base / "data", base / "server.log"
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)

    def run(*args: str) -> None:
        subprocess.run(
            [str(bin_dir / args[0]), *args[1:]],
            check=True,
            cwd=base,
            user=user,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # the server must not inherit a pipe pytest waits on
            stderr=subprocess.PIPE,
            timeout=60,
        )

    # No TCP listener: the socket lives in `base`, so nothing clashes with another server on port 5432.
    server = f"-c listen_addresses= -k {base} -p 5432 -c fsync=off -c full_page_writes=off"
    try:
        run("initdb", "-D", str(data), *INITDB_FLAGS)
        run("pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o", server, "start")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        server_log = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        stderr = (exc.stderr or b"").decode(errors="replace")
        pytest.fail(f"throwaway Postgres did not start: {exc}\n{stderr}{server_log}")
    try:
        yield f"postgresql://postgres@/postgres?host={base}&port=5432"
    finally:
        subprocess.run(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            cwd=base,
            user=user,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
