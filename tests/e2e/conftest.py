"""A real standalone FATE-Flow for the end-to-end tests: own home, free port, stopped by pid afterwards.

Its processes carry the wiretap in hooks/ (a spy that records what crosses FATE's federation).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from fate_components.ops import flow_server

HOOKS = Path(__file__).resolve().parent / "hooks"


@pytest.fixture(scope="session")
def wire_tap(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wire_tap")


@pytest.fixture(scope="session")
def flow(tmp_path_factory, wire_tap):
    home = tmp_path_factory.mktemp("fate_flow_home")
    pythonpath = os.pathsep.join(p for p in [str(HOOKS), os.environ.get("PYTHONPATH", "")] if p)
    server = flow_server.start(home, extra_env={"FATE_LUNG_SITE_HOOKS": "fate_lung_wiretap",
                                                "FATE_LUNG_WIRE_TAP": str(wire_tap), "PYTHONPATH": pythonpath})
    yield server
    flow_server.stop(home)
    assert not flow_server._pid_alive(server.pid), f"FATE-Flow pid {server.pid} still alive after stop"


@pytest.fixture(scope="session")
def tiny_sites(tmp_path_factory) -> dict[str, Path]:
    from fate_components.core.synthetic.sites import generate_federation

    return generate_federation(tmp_path_factory.mktemp("sites"), size="tiny", seed=0)
