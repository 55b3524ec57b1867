#!/usr/bin/env bash
# Install fate-lung into $VENV (default .venv) the way a FATE site would:
#   1. FATE 2.2.0 itself (scripts/install_fate.sh: pyfate, fate_client, fate_flow; see there why in two steps);
#   2. the fate-lung wheel (scripts/build_wheel.sh into dist/), installed WITH its dependencies, so that
#      what pyproject.toml declares is what makes it work;
#   3. its extras, $EXTRAS (default `test`; `make test-deploy` adds `deploy`).
# A wheel, not an editable install: FATE-Flow's task processes import fate_components from site-packages.
# Idempotent: the stamp covers pyproject.toml, requirements/, these scripts and every file under
# fate_components/, so an edit of the code gets the wheel rebuilt and reinstalled on the next run;
# otherwise a run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-test}
# Two stamps: FATE's step reruns only when its requirements change, the wheel whenever the package does.
fate_stamp="$VENV/.fate-installed"
fate_want=$(cat requirements/*.txt scripts/install_fate.sh | sha256sum | cut -c1-16)
stamp="$VENV/.fate-lung-installed"
want=$({ echo "extras=$EXTRAS $fate_want"
         cat pyproject.toml scripts/install.sh scripts/build_wheel.sh
         find fate_components -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum
       } | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "environment $VENV is up to date"
else
  if [ ! -f "$fate_stamp" ] || [ "$(cat "$fate_stamp")" != "$fate_want" ]; then
    bash scripts/install_fate.sh "$VENV"
    echo "$fate_want" > "$fate_stamp"
  fi
  whl=$(bash scripts/build_wheel.sh "$VENV" dist)
  pip=("$VENV/bin/pip" install --disable-pip-version-check -q)
  "${pip[@]}" "$whl"
  # pip skips a local wheel whose version is already installed ("Use --force-reinstall"), so the new
  # code goes in with --force-reinstall; --no-deps, or it would reinstall torch and everything else.
  "${pip[@]}" --force-reinstall --no-deps "$whl"
  "${pip[@]}" "$whl[$EXTRAS]"
  echo "$want" > "$stamp"
fi
# The checks, run from outside the source tree in isolated mode (-I), so that they see the installed package.
root=$(pwd)
cd "$VENV"
bin/python -I - "$root" <<'PY'
import importlib
import importlib.metadata as md
import json
import pathlib
import pkgutil
import sys
import sysconfig

src = pathlib.Path(sys.argv[1]) / "fate_components"
# FATE finds plugin components through pkg_resources, which setuptools >= 81 removed.
v = md.version("setuptools")
assert int(v.split(".")[0]) < 81, f"setuptools {v} is installed; FATE needs setuptools<81 to find plugin components"
eps = {ep.name for ep in md.entry_points(group="fate.ext.component_desc")}
missing = {"luna16_reader", "homo_lung_nn", "lung_evaluation"} - eps
assert not missing, f"fate-lung components not registered: {missing}"
# The installed fate-lung is the wheel (not an editable install or the source tree), with every module.
direct = json.loads(md.distribution("fate-lung").read_text("direct_url.json") or "{}")
assert direct.get("url", "").endswith(".whl"), f"fate-lung is not installed from its wheel: {direct}; run scripts/install.sh"
import fate_components  # noqa: E402

site = pathlib.Path(sysconfig.get_paths()["purelib"]).resolve()
here = pathlib.Path(fate_components.__file__).resolve()
assert here.is_relative_to(site), f"fate_components is imported from {here}, not from {site}"


def files(root: pathlib.Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


# Every file of the sources is in the wheel (a data file needs [tool.setuptools.package-data]) and no other.
installed_files, source_files = files(here.parent), files(src)
assert installed_files == source_files, (
    f"the installed fate_components differs from the sources: only installed {sorted(installed_files - source_files)}, "
    f"only in the sources {sorted(source_files - installed_files)}")
installed = {"fate_components"} | {m.name for m in pkgutil.walk_packages(fate_components.__path__, "fate_components.")}
for name in sorted(installed):
    importlib.import_module(name)
print(f"fate-lung {md.version('fate-lung')}: wheel installed in {sys.prefix}, {len(installed)} modules import")
PY
