#!/usr/bin/env bash
# Session 22, second call (~500 s): (1) llama-1b offloaded with graphs, lent by default now, through
# `tuitune train` too (--trainer): the trainer's lent path on a GPU and its summary peak (about 1.45
# GiB expected, not 2.07). (2) Criterion 1 (--repeat 3) with whatever call56 showed to be fastest
# (export TUITUNE_MERGE_VARIANTS=1 before running this if the variants won). (3) The kernel suite.
source .device/setup.sh; source .device/session17.sh
export TUITUNE_MERGE_ADAPTERS=1
[ -f .device/triton-cache.tgz ] || echo "no triton cache carried: the variants autotune from scratch"
timeout 170 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --cuda-graphs on --baseline none --steps 12 --trainer --json $M/bench-llama-1b-qlora-offloaded-graphs-lent-trainer-$G-$D-s22.json" \
  2>&1 | tee $L/bench1b-lent-trainer.log | grep -v "^\s*$" | tail -16 | cut -c1-300; elapsed
timeout 240 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --steps 8 --repeat 3 --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s22.json" \
  2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-400; elapsed
kernel_suite 585
pack_logs
