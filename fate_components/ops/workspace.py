"""Where fate-lung keeps its files on the operator's machine: one project home and the folders under it.

The home is `$FATE_LUNG_HOME` (default `.fate-lung`, relative to where the command runs): the
standalone FATE-Flow's home (`flow/`), the demo's sample data (`data/`), each job's downloaded
results and report (`results/<job id>/`) and the three-site deployment (`deploy/`). The CLI and
every ops module ask this module, so no ops module needs the CLI.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_VARIABLE = "FATE_LUNG_HOME"
DEFAULT_HOME = ".fate-lung"


@dataclass(frozen=True)
class Workspace:
    """The project home and the paths fate-lung derives from it (absolute, except `root` as configured)."""

    root: Path

    @classmethod
    def from_env(cls) -> Workspace:
        return cls(Path(os.environ.get(HOME_VARIABLE, DEFAULT_HOME)))

    def flow_home(self, home: str | Path | None = None) -> Path:
        """The standalone FATE-Flow's home: `home` when given (the commands' --home), else `<root>/flow`."""
        return Path(home).resolve() if home else (self.root / "flow").resolve()

    def data(self, name: str) -> Path:
        """A generated sample federation, by name (e.g. `luna16-seed0-36patients`)."""
        return (self.root / "data" / name).resolve()

    def results(self, job_id: str) -> Path:
        """A job's downloaded models, metrics, summary and report."""
        return (self.root / "results" / job_id).resolve()

    @property
    def deploy_root(self) -> Path:
        """Where `fate-lung deploy up` puts RabbitMQ, nginx and the three sites."""
        return (self.root / "deploy").resolve()
