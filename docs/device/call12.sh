#!/usr/bin/env bash
# the whole kernel suite on the GPU (criterion 9), 8 pytest-xdist workers, each capped at 0.95/8 of the
# GPU's memory by tests/conftest.py. The full -v log goes to $OUT/logs (call9 kept only a tail, and a
# cut run printed no summary); the console shows failures, the slowest tests and the summary.
source .device/setup.sh
L=$OUT/logs
timeout ${LIMIT:-560} python3 -m pytest -v -n 8 -p no:cacheprovider --tb=short -rfE -W ignore --durations=30 tests/kernels > $L/kernels-n8.log 2>&1
echo "pytest rc $?"
grep -E "FAILED|ERROR" $L/kernels-n8.log | head -40
sed -n '/slowest/,$p' $L/kernels-n8.log | tail -60
grep -cE "PASSED" $L/kernels-n8.log
echo "elapsed $SECONDS s"
