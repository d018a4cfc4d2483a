#!/usr/bin/env bash
# after call12 (8 workers, each capped at 0.95/8 of the GPU): the tests that failed or errored there,
# and those it did not reach, in one process (no cap), full log to $OUT/logs. List: .device/rerun.txt.
source .device/setup.sh
L=$OUT/logs
timeout ${LIMIT:-250} python3 -m pytest -v -p no:cacheprovider --tb=short -rfE -W ignore --durations=20 $(cat .device/rerun.txt) > $L/rerun.log 2>&1
echo "pytest rc $?"
grep -E "FAILED|ERROR|passed|failed" $L/rerun.log | tail -30
echo "elapsed $SECONDS s"
