#!/usr/bin/env bash
# Session 22, last call (~130 s; 320 s of device time were left): criterion 6 at llama-1b offloaded with
# graphs (lent) with the next step's batches fetched before the log's wait (batches_ahead) and the
# collector frozen: `tuitune train` against the bench, and kernels on against off.
source .device/setup.sh; source .device/session17.sh
export TUITUNE_MERGE_ADAPTERS=1
timeout 150 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --cuda-graphs on --baseline none --steps 12 --trainer --json $M/bench-llama-1b-qlora-offloaded-graphs-lent-trainer-$G-$D-s22-ahead.json" \
  2>&1 | tee $L/bench1b-lent-trainer-ahead.log | grep -v "^\s*$" | tail -14 | cut -c1-300; elapsed
pack_logs
