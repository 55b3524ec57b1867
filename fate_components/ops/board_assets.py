"""The component descriptions FATE-Board needs to draw a job graph with fate-lung's components.

FATE-Board 2.x draws a job's graph from one description per component: its front end asks
`GET v1/tracking/component/config?componentName=<component>` for each component module of the
job (`resources-front-end/packages/fate-board/src/utils/dagExplaination.ts`), and the server
answers with `<board working directory>/dag/<component>.yaml`, listed in that folder
(`src/main/java/org/fedai/fate/board/services/JobDetailService.java`, `getComponentStaticInfo`;
the working directory is where `bin/service.sh` starts it, the board's install folder, whose
`dag/` ships FATE's own descriptions: `package.xml` copies `static/*.yaml` there). Without the
file the board shows "There has no configuration yaml for component ..." and no ports.

Each yaml is FATE's own description, written by the code behind
`python -m fate.components component desc --name X --save X.yaml`
(fate/components/entrypoint/cli/component/desc_cli.py: `load_component(name).dump_yaml(stream)`).
"""
from __future__ import annotations

from pathlib import Path

COMPONENTS = ("luna16_reader", "homo_lung_nn", "lung_evaluation")


def file_name(component: str) -> str:
    """The name FATE-Board looks for: the component's name plus `.yaml`."""
    return f"{component}.yaml"


def write_board_assets(out_dir: Path, components: tuple[str, ...] = COMPONENTS) -> list[Path]:
    """Write `<component>.yaml` for each component into `out_dir` (created); returns the paths written."""
    from fate.components.core import load_component

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in components:
        component = load_component(name)   # found through the fate.ext.component_desc entry points
        path = out_dir / file_name(name)
        tmp = path.with_name(path.name + ".partial")
        with open(tmp, "w") as stream:
            component.dump_yaml(stream)
        tmp.replace(path)
        written.append(path)
    return written
