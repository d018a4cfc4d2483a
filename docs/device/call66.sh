#!/usr/bin/env bash
# Next session's first call on an H100 (~330 s): which calls make the llama-1b step wait for the GPU?
# Session 25's profile: ~20% of the step idle in the bench and the trainer alike (gaps of 4-10 ms after a
# nonzero near the step's start and mid-step). docs/device/syncprobe names each synchronizing call's
# Python stack in two steps of every process (bench tuitune path, trainer kernels on/off); then the 1b
# trainer with the lagged log, non-blocking batch copies and per-step clocks against TUITUNE_LAGGED_LOG=0
# (call65, which never ran in session 25).
source .device/setup.sh; source .device/session17.sh
export TUITUNE_MERGE_ADAPTERS=1
probed() { env PYTHONPATH=$PWD/.device/syncprobe:$PWD/.device/ab/work:/tmp/site python3 -P -m tuitune bench "$@"; }
SYNCPROBE_LOG=$L/syncs.txt timeout 200 bash -c "$(declare -f probed); probed --shape llama-1b --checkpointing offloaded --cuda-graphs on --baseline none --steps 12 --trainer" \
  > $L/bench1b-syncprobe.log 2>&1; echo "rc $?"; elapsed
grep -E "^==|^  [0-9]+x" -A4 $L/syncs.txt | cut -c1-140 | head -120
for lag in 1 0; do
  TUITUNE_LAGGED_LOG=$lag timeout 110 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --cuda-graphs on --baseline none --steps 12 --trainer --json $M/bench-llama-1b-qlora-offloaded-graphs-lent-trainer-$G-$D-lag$lag.json" \
    2>&1 | tee $L/bench1b-lent-trainer-lag$lag.log | grep -E "^tuitune  |^  (kernels|stock) |^  train| peak = max|Traceback|Error" | cut -c1-120 | sed "s/^/lag=$lag: /"
  elapsed
done
pack_logs
