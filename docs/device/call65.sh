#!/usr/bin/env bash
# Session 25's last call (~215 s): call63 showed that with the log read one step late the batch copy
# to the GPU became the step's wait (accelerate's blocking .to: 19 ms a step), and that tokens/s timed
# at the logs is wrong once logs lag. Now batches are copied non-blocking and each step has its own
# clock: the 1b trainer with the lag, then without it (TUITUNE_LAGGED_LOG=0), on one host.
source .device/setup.sh; source .device/session17.sh
export TUITUNE_MERGE_ADAPTERS=1
for lag in 1 0; do
  TUITUNE_LAGGED_LOG=$lag timeout $([ $lag = 1 ] && echo 110 || echo $((215 - SECONDS))) bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --cuda-graphs on --baseline none --steps 12 --trainer --json $M/bench-llama-1b-qlora-offloaded-graphs-lent-trainer-$G-$D-s25-lag$lag.json" \
    2>&1 | tee $L/bench1b-lent-trainer-lag$lag.log | grep -E "^tuitune  |^  (kernels|stock) |^  train| peak = max|Traceback|Error" | cut -c1-120 | sed "s/^/lag=$lag: /"
  elapsed
done
pack_logs
