#!/usr/bin/env bash
# Session 20, call 3 (~470 s; END bounds the kernel suite): criteria 2 and 1 with --repeat 3 (stock and
# tuitune alternating, the median run in the table: call50's two 1b runs gave 2.20x and 1.85x on one
# H100 whose host moved 25% within a run), then llama-1b offloaded with CUDA graphs, eager and graphed,
# with the memory trace (what the graphed step's peak holds: graphs fix the host-bound 1b step but
# their pool took it to 0.27x in session 7), then the kernel suite (nf4_merge's kept launch is new).
source .device/setup.sh; source .device/session17.sh
export TUITUNE_MERGE_ADAPTERS=1
END=${END:-560}
timeout 200 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --steps 20 --repeat 3 --json $M/bench-llama-1b-qlora-offloaded-$G-$D-s20.json" \
  2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-400; elapsed
timeout 240 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --steps 8 --repeat 3 --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s20.json" \
  2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-400; elapsed
timeout 100 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --baseline none --cuda-graphs both --memory-trace --steps 10 --json $M/bench-llama-1b-qlora-offloaded-graphs-$G-$D-s20.json" \
  > $L/graphs-1b.log 2>&1; grep -v "^\s*$" $L/graphs-1b.log | grep -v "Loading\|Writing" | tail -40 | cut -c1-220; elapsed
kernel_suite $END; pkill -f "pytest" || true; elapsed
pack_logs
