#!/usr/bin/env bash
# the whole kernel suite on the GPU (criterion 9): 4 pytest-xdist workers, each capped at a quarter of
# the GPU's memory by tests/conftest.py (8 uncapped workers starved each other in session 9), the
# slowest tests listed. Triton's cache from earlier calls (.device/triton-cache.tgz) saves compiles.
source .device/setup.sh
L=$OUT/logs
timeout 570 python3 -m pytest -v -n 4 -p no:cacheprovider --tb=short -rf -W ignore --durations=25 tests/kernels 2>&1 \
  | grep -v -E "PASSED|PytestBenchmarkWarning|warner\(|^$" | tail -120 | tee $L/kernels-n4.log
save_triton_cache
echo "elapsed $SECONDS s"
