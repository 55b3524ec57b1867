#!/usr/bin/env bash
# The device checks for a machine with a GPU, in about 8 minutes: the device-path unit tests (CUDA tests run
# there, skip with a reason elsewhere), bench/gpu_training.py, and the Paillier workers sweep.
#
#   WHEELS=/path/to/gpu_wheels bash bench/gpu_check.sh     # from the repository root; WHEELS optional
#
# Each step has a time limit (TESTS_S, TRAIN_BENCH_S, PAILLIER_S seconds; defaults 240, 150 and 300; on a
# 16-core GPU machine the steps should take well under that, not yet measured there); a step that fails or runs
# out makes the exit status 1, the later steps still run.
#
# Needs torch, numpy and numba (the GPU machine has them, numpy 2.x: untried with it here, numpy 1.26 only) and the
# wheels in bench/gpu_wheels.txt unless installed, from $WHEELS without a registry. No FATE: pytest runs with
# --noconftest (tests/unit/conftest.py imports the DICOM and MetaImage readers) on tests that need no fixture of it.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=.
PY=${PYTHON:-python}
status=0
step() { echo; echo "=== $* ($(date +%H:%M:%S))"; }

step "environment"
$PY - <<'PYEOF'
import platform, numpy, torch
print(f"python {platform.python_version()}, numpy {numpy.__version__}, torch {torch.__version__}, "
      f"CUDA build {torch.version.cuda or 'none'}, cuda available {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print(f"GPU {torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}, "
          f"cudnn {torch.backends.cudnn.version()}")
PYEOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv

if [ -n "${WHEELS:-}" ]; then
    step "install the wheels of bench/gpu_wheels.txt from $WHEELS (no index)"
    grep -v '^#' bench/gpu_wheels.txt | grep . | xargs $PY -m pip install --no-index --find-links "$WHEELS" \
        || { echo "wheel install failed (another Python than the wheels'? see bench/gpu_wheels.txt)"; status=1; }
fi
for module in pytest sklearn opacus scipy gmpy2; do
    $PY -c "import $module" 2>/dev/null || echo "missing: $module (set WHEELS, see bench/gpu_wheels.txt)"
done

step "unit tests of the device path"
timeout "${TESTS_S:-240}" $PY -m pytest -q -rs -p no:cacheprovider --noconftest \
    tests/unit/test_device.py tests/unit/test_training.py tests/unit/test_resume_and_watchdog.py \
    tests/unit/test_privacy.py tests/unit/test_model.py tests/unit/test_signature.py \
    tests/unit/test_secure_agg_protocol.py || status=1

step "bench/gpu_training.py"
timeout "${TRAIN_BENCH_S:-150}" $PY bench/gpu_training.py || status=1

step "bench/secure_aggregation.py --workers 1,2,4,8,16"
timeout "${PAILLIER_S:-300}" $PY bench/secure_aggregation.py --workers 1,2,4,8,16 || status=1

step "done: exit $status"
exit $status
