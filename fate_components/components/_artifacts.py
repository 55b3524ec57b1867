"""Writing component outputs: whole files only, and directory outputs FATE-Flow can tell apart."""
from __future__ import annotations

import hashlib
import os
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


def replace_file(path: Path, write) -> None:
    """Write through a temporary name, so a reader never finds half a file under the final one."""
    tmp = path.with_name(path.name + f".partial-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
