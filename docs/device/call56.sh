#!/usr/bin/env bash
# Session 22, first call (~480 s; written in session 21, whose device time ran out). Trees:
# bash docs/device/prepare_ab.sh before=4d7c8bc   (work = this tree; before = session 21's start)
# (1) The graph tests, with the lent run's peak bookkeeping (outside_pool_peak). (2) merge_bandwidth.py
# with TUITUNE_MERGE_VARIANTS=1: every tile config of nf4_merge, the smaller tiles and the WORDS / ACC
# ways of building a tile, timed in CUDA graphs and checked against the autotuned output. (3) llama-8b
# offloaded (criterion 1's tuitune side): before (4d7c8bc), work (adds the 32 x 128 tile to the
# default list), work with the variants in the autotuner.
source .device/setup.sh; source .device/session17.sh
export TUITUNE_MERGE_ADAPTERS=1
timeout 120 python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore tests/kernels/test_layer_graphs.py \
  tests/kernels/test_nf4_merge.py > $L/graph-merge-tests.log 2>&1
echo "graph + merge tests rc $?"; tail -2 $L/graph-merge-tests.log; grep -E "^(FAILED|ERROR)|^E " $L/graph-merge-tests.log | head; elapsed
TUITUNE_MERGE_VARIANTS=1 timeout 170 env PYTHONPATH=$PWD/.device/ab/work:/tmp/site python3 -P .device/merge_bandwidth.py > $L/merge-bandwidth.txt 2>&1
grep -vE "'BY_BYTE': True" $L/merge-bandwidth.txt | head -80 | cut -c1-170; elapsed  # the full list is in the logs
ab8b before before; elapsed
ab8b work work; elapsed
TUITUNE_MERGE_VARIANTS=1 timeout 120 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --baseline none --steps 10" \
  2>&1 | tee -a $L/ab-8b-variants.log | grep -oE "^tuitune .*|timed steps.*" | sed "s/^/variants: /"; elapsed
ab8b before before; elapsed
echo "medians: before $(med before), work $(med work), variants $(med variants)"
save_triton_cache; pack_logs
