#!/usr/bin/env bash
# which kernel tests fail on the GPU (xdist, verbose, stop after 3 failures with their tracebacks)
source .device/setup.sh >/dev/null
timeout 190 python3 -m pytest -v -n 8 -p no:cacheprovider --maxfail=3 --tb=short -W ignore tests/kernels 2>&1 | grep -v -E "PASSED|SKIPPED|PytestBenchmarkWarning|warner\(|^$" | tail -150
echo "elapsed $SECONDS s"
