"""One recorded replay of the bundled tour, shared by the picture tests (it is
read-only for them: every picture is drawn from it without changing it)."""

from __future__ import annotations

import pytest

from sgx_emm import replay
from sgx_emm.draw import Recording, record_replay
from sgx_emm.replay import Report


@pytest.fixture(scope="session")
def tour() -> tuple[Report, Recording]:
    return record_replay(replay.example_lines())
