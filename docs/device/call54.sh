#!/usr/bin/env bash
# Session 21, first call (~520 s): the loss phase inside the graphs' pool (loss_in_graph_pool,
# TUITUNE_GRAPH_LEND=1; written in session 20, never run on a GPU). (1) The graph tests (the lent
# run against eager layers; every other graph and checkpointing test beside it). (2) llama-1b
# offloaded with graphs, lent and not (speed; the bench counts a lent run as the peak outside the
# pool, from a traced step, plus the pool). (3) Criterion 2 with the lent graphs (--repeat 3, with
# stock), only if (1) passed. (4) Criterion 1 (--repeat 3): for the H200, if one came. (5) With time
# left, merge_bandwidth.py: the merged dequantization's GB/s per tile config (22.3 ms of an 8b step).
source .device/setup.sh; source .device/session17.sh
export TUITUNE_MERGE_ADAPTERS=1
timeout 170 python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore tests/kernels/test_layer_graphs.py \
  tests/kernels/test_activation_checkpointing.py > $L/graph-tests.log 2>&1; rc=$?
echo "graph tests rc $rc"; tail -3 $L/graph-tests.log; grep -E "^(FAILED|ERROR)" $L/graph-tests.log | head; elapsed
timeout 90 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --baseline none --cuda-graphs on --steps 12" \
  > $L/graphs-1b-unlent.log 2>&1; grep -E "^tuitune|timed steps" $L/graphs-1b-unlent.log | cut -c1-300
TUITUNE_GRAPH_LEND=1 timeout 110 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --baseline none --cuda-graphs on --steps 12" \
  > $L/graphs-1b-lent.log 2>&1; grep -E "^tuitune|timed steps|loss memory" $L/graphs-1b-lent.log | cut -c1-400; elapsed
if [ $rc -eq 0 ]; then
  TUITUNE_GRAPH_LEND=1 timeout 200 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --cuda-graphs on --steps 20 --repeat 3 --json $M/bench-llama-1b-qlora-offloaded-graphs-lent-$G-$D-s21.json" \
    2>&1 | tee $L/bench1b-graphs-lent.log | grep -v "^\s*$" | tail -7 | cut -c1-400; elapsed
fi
[ $SECONDS -lt 330 ] && { timeout 240 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --steps 8 --repeat 3 --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s21.json" \
  2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-400; elapsed; }
[ $SECONDS -lt 520 ] && { timeout 70 env PYTHONPATH=$PWD/.device/ab/work:/tmp/site python3 -P .device/merge_bandwidth.py \
  > $L/merge-bandwidth.txt 2>&1; grep -E "^[a-z/]+ [0-9]|autotuned|plain|copy" $L/merge-bandwidth.txt | head -20; elapsed; }
pack_logs
