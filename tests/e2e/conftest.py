"""The whole stack as separate processes, for end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localstack.fullstack import LocalStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[LocalStack]:
    # Automine, no block timer: each test mines exactly the blocks it needs.
    local = LocalStack(Path(tmp_path_factory.mktemp("stack")), block_time_s=None, postgres=postgres)
    local.start_all()
    yield local
    codes = local.stop()
    assert all(code == 0 for code in codes.values()), f"unclean shutdown: {codes}"
