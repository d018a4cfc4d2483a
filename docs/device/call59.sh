#!/usr/bin/env bash
# Session 22, fourth call (~260 s): with the collector frozen in the bench's tuitune path and in `tuitune
# train` (collector_freeze), (1) criterion 6 on llama-1b offloaded with graphs (--trainer) and (2)
# criterion 2 (--repeat 3).
source .device/setup.sh; source .device/session17.sh
export TUITUNE_MERGE_ADAPTERS=1
timeout 150 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --cuda-graphs on --baseline none --steps 12 --trainer --json $M/bench-llama-1b-qlora-offloaded-graphs-lent-trainer-$G-$D-s22-frozen.json" \
  2>&1 | tee $L/bench1b-lent-trainer.log | grep -v "^\s*$" | tail -14 | cut -c1-300; elapsed
timeout 150 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --cuda-graphs on --steps 12 --repeat 3 --json $M/bench-llama-1b-qlora-offloaded-graphs-$G-$D-s22-frozen.json" \
  2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-400; elapsed
pack_logs
