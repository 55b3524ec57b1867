"""A real standalone FATE-Flow for the end-to-end tests: own home, free port, stopped by pid afterwards."""
from __future__ import annotations

from pathlib import Path

import pytest

from fate_components.ops import flow_server


@pytest.fixture(scope="session")
def flow(tmp_path_factory):
    home = tmp_path_factory.mktemp("fate_flow_home")
    server = flow_server.start(home)
    yield server
    flow_server.stop(home)
    assert not flow_server._pid_alive(server.pid), f"FATE-Flow pid {server.pid} still alive after stop"


@pytest.fixture(scope="session")
def tiny_sites(tmp_path_factory) -> dict[str, Path]:
    from fate_components.core.sample_data import generate_federation

    return generate_federation(tmp_path_factory.mktemp("sites"), size="tiny", seed=0)
