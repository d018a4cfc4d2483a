#!/usr/bin/env bash
# Session 21, second call (~560 s): criteria 6, 7 and 5 again, on the merged adapters' code (not
# measured since merging, d2d2338). (1) Criterion 6: llama-1b under auto with graphs, the bench and
# `tuitune train` with kernels on and off. (2) Criterion 7: packed against unpacked `tuitune train`
# (rows of 50 to 2,048 tokens). (3) Criterion 5: 98,304 tokens at batch 1 within 24 GiB.
source .device/setup.sh; source .device/session17.sh
export TUITUNE_MERGE_ADAPTERS=1
timeout 230 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing auto --cuda-graphs on --baseline none --steps 20 --trainer --json $M/bench-llama-1b-qlora-auto-graphs-trainer-$G-$D-s21.json" \
  2>&1 | tee $L/bench1b-trainer.log | grep -v "^\s*$" | tail -14 | cut -c1-300; elapsed
timeout 200 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --baseline none --batch 8 --steps 12 --packing --json $M/bench-llama-1b-qlora-packing-$G-$D-s21.json" \
  2>&1 | tee $L/bench1b-packing.log | grep -v "^\s*$" | tail -8 | cut -c1-300; elapsed
timeout $((585 - SECONDS)) bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --batch 1 --seq 98304 --steps 3 --warmup 1 --baseline none --memory-cap 24 --json $M/bench-llama-8b-qlora-offloaded-98304-cap24-$G-$D-s21.json" \
  2>&1 | tee $L/bench8b-98304.log | grep -v "^\s*$" | tail -5 | cut -c1-300; elapsed
pack_logs
