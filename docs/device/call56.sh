#!/usr/bin/env bash
# Session 22, first call (~330 s; written in session 21, whose device time ran out before it could
# run): (1) the graph tests, with the lent run's peak bookkeeping (outside_pool_peak: one stretch with
# nothing lent and one with the head's copy and the chunk, per step). (2) merge_variants.py: the merged
# dequantization built from 32-bit words and/or accumulated in the dot, over small tiles, against
# nf4_merge (30 us slower than the plain dequantization per MLP weight on call54's H100). (3) llama-1b
# offloaded with graphs, lent by default now, through `tuitune train` too (--trainer): the trainer's
# lent path on a GPU, and its summary peak (about 1.45 GiB expected, not 2.07).
source .device/setup.sh; source .device/session17.sh
export TUITUNE_MERGE_ADAPTERS=1
timeout 120 python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore tests/kernels/test_layer_graphs.py > $L/graph-tests.log 2>&1
echo "graph tests rc $?"; tail -2 $L/graph-tests.log; grep -E "^(FAILED|ERROR)|^E " $L/graph-tests.log | head; elapsed
timeout 150 env PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/.device/ab/work:/tmp/site python3 -P .device/merge_variants.py > $L/merge-variants.txt 2>&1
cat $L/merge-variants.txt | cut -c1-200; elapsed
timeout $((400 - SECONDS)) bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --cuda-graphs on --baseline none --steps 12 --trainer --json $M/bench-llama-1b-qlora-offloaded-graphs-lent-trainer-$G-$D-s22.json" \
  2>&1 | tee $L/bench1b-lent-trainer.log | grep -v "^\s*$" | tail -16 | cut -c1-300; elapsed
pack_logs
