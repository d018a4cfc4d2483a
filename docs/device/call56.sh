#!/usr/bin/env bash
# Session 21, third call (~230 s): (1) merge_variants.py: the merged dequantization built from 32-bit
# words and/or accumulated in the dot, over a grid of tiles, against nf4_merge (30 us slower than the
# plain dequantization per MLP weight on call54's H100). (2) llama-1b offloaded with graphs, now lent
# by default, through `tuitune train` too (--trainer): the trainer's lent path on a GPU.
source .device/setup.sh; source .device/session17.sh
export TUITUNE_MERGE_ADAPTERS=1
timeout 110 env PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/.device/ab/work:/tmp/site python3 -P .device/merge_variants.py > $L/merge-variants.txt 2>&1
cat $L/merge-variants.txt | cut -c1-200; elapsed
timeout $((228 - SECONDS)) bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --cuda-graphs on --baseline none --steps 8 --trainer --json $M/bench-llama-1b-qlora-offloaded-graphs-lent-trainer-$G-$D-s21.json" \
  2>&1 | tee $L/bench1b-lent-trainer.log | grep -v "^\s*$" | tail -16 | cut -c1-300; elapsed
pack_logs
