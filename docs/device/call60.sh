#!/usr/bin/env bash
# Written in session 22 for the next session (~480 s). Tree: this one (`prepare_ab.sh` builds work).
# (1) The graph tests (the lent run's peak bookkeeping now leaves each capture's own peak out).
# (2) Criterion 6 at llama-1b offloaded with graphs (lent): `tuitune train` against the bench and
# kernels on against off, with the next step's batches fetched before the log's wait (batches_ahead)
# and without (TUITUNE_BATCHES_AHEAD=0). The trainer's summary peak should now read about 1.45 GiB,
# not 1.81. (3) Criterion 6 at llama-8b, reported beside the 1b figure whatever it shows.
# (4) gcprobe logs every full collection of each process (bench and trainer children) to gc.txt.
source .device/setup.sh; source .device/session17.sh
export TUITUNE_MERGE_ADAPTERS=1 TUITUNE_GC_LOG=$L/gc.txt
run() { local t=$1; shift; env PYTHONPATH=$PWD/.device/gcprobe:$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune bench "$@"; }
timeout 150 python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore tests/kernels/test_layer_graphs.py \
  tests/trainer/test_outside_pool_peak.py > $L/graph-tests.log 2>&1
echo "graph tests rc $?"; tail -2 $L/graph-tests.log; grep -E "^(FAILED|ERROR)|^E " $L/graph-tests.log | head; elapsed
for ahead in 1 0; do
  TUITUNE_BATCHES_AHEAD=$ahead timeout 150 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --cuda-graphs on --baseline none --steps 12 --trainer --json $M/bench-llama-1b-qlora-offloaded-graphs-lent-trainer-$G-$D-ahead$ahead.json" \
    2>&1 | tee $L/bench1b-lent-trainer-ahead$ahead.log | grep -v "^\s*$" | tail -12 | cut -c1-200 | sed "s/^/ahead=$ahead: /"; elapsed
done
timeout $((585 - SECONDS)) bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --baseline none --steps 10 --trainer --json $M/bench-llama-8b-qlora-offloaded-trainer-$G-$D.json" \
  2>&1 | tee $L/bench8b-trainer.log | grep -v "^\s*$" | tail -10 | cut -c1-200; elapsed
cut -c1-400 $L/gc.txt
pack_logs
