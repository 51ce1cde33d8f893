"""Session fixtures that start the real parts: PostgreSQL, SoftHSM2, anvil.

Each gets free ports and a private directory under one temporary run
directory, and is torn down after the session.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from localstack.anvil import Anvil
from localstack.postgres import PostgresCluster
from localstack.softhsm import SoftHsmToken
from localstack.token import Token, deploy

# Properties, not speed: a per-example time limit fails a correct test when the
# shared CI machine is busy (seen: 372 ms against the default 200 ms). Speed is
# measured by scripts/bench, never by a timed test.
settings.register_profile("kassa", deadline=None)
settings.load_profile("kassa")


@pytest.fixture(scope="session")
def run_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kassa-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(run_dir: Path) -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(run_dir / "postgres")
    cluster.start()
    yield cluster
    cluster.stop()


_db_counter = iter(range(1, 10**6))


@pytest.fixture
def fresh_dsn(postgres: PostgresCluster) -> str:
    """A new empty database in the session's cluster, for one test."""
    return postgres.create_database(f"t{next(_db_counter)}")


@pytest.fixture
def softhsm(tmp_path: Path) -> SoftHsmToken:
    """A freshly initialised SoftHSM2 token of its own for one test."""
    return SoftHsmToken(tmp_path / "softhsm").init()


@pytest.fixture(scope="session")
def anvil(run_dir: Path) -> Iterator[Anvil]:
    node = Anvil(run_dir / "anvil").start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def token(anvil: Anvil) -> Token:
    """A 6-decimal test token on the session's anvil, owned by account 0."""
    return deploy(anvil.rpc, anvil.accounts()[0])
