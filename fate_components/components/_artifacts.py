"""Registering component outputs: directory outputs FATE-Flow can tell apart (whole files: `model_io.replace_file`)."""
from __future__ import annotations

import hashlib
from pathlib import Path

OUTPUT_NAMESPACE = "fate_lung_outputs"


def publish_directory(output, metadata: dict) -> None:
    """Register a data-directory output under a name unique to this job, party and task.

    Without a name FATE-Flow derives one from the last two path parts, which are the same
    (`<output key>/data_directory`) for every party; a downstream task of a host then
    resolves its input to the *guest's* directory (fate_flow/manager/outputs/data.py,
    `get_output_name`, used by `_push_data` in fate_flow/hub/components_wraps/fate/_wraps.py).
    """
    path = Path(output.get_directory())
    parts = path.parts[-8:-1]  # .../jobs/<job>/<role>/<party>/<task>/<version>/output/<key>/data_directory
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    output.write_metadata(metadata, name="-".join(parts + (digest,)), namespace=OUTPUT_NAMESPACE)
