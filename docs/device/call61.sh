#!/usr/bin/env bash
# Written in session 22 for whenever an H200 comes (~420 s). Criterion 1 has never been measured on the
# H200 with the current code (it needs 2.1x: about 322 ms a step against the H200's stock ~680 ms), and
# criterion 4 (`auto`, >= 2.8x) was last measured on it in session 12. On an H100 it stops at once.
source .device/setup.sh; source .device/session17.sh
[ "$G" = h200 ] || { echo "not an H200 ($GPU): nothing run"; exit 0; }
export TUITUNE_MERGE_ADAPTERS=1
timeout 240 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --steps 8 --repeat 3 --json $M/bench-llama-8b-qlora-offloaded-$G-$D.json" \
  2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-400; elapsed
timeout $((585 - SECONDS)) bash -c "$(declare -f run); run work --shape llama-8b --checkpointing auto --steps 8 --json $M/bench-llama-8b-qlora-auto-$G-$D.json" \
  2>&1 | tee $L/bench8b-auto.log | grep -v "^\s*$" | tail -16 | cut -c1-300; elapsed
pack_logs
