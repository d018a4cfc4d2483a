#!/usr/bin/env bash
# Session 23's last call (~300 s with session 24's --profile 1), which never started: run it first.
# The working tree adds quick_exit (every process entry point freezes the heap from an exit handler,
# after flushing open files) and preload (the trainer child and each rank import the training libraries
# with the collector paused, then freeze them): trainer children, bench children and torchrun ranks exit
# without the collector's walk, and start without its collections. On an H100: do they still exit
# cleanly on a GPU (CUDA context, the events queue), where does criterion 6 land at llama-1b (lent
# graphs) on this host, what is the lent peak made of (session 24's peak parts line), and how long is
# the trainer's step-start gap (the profile)? On an H200: criterion 1 (--repeat 2), never measured there.
source .device/setup.sh; source .device/session17.sh
lscpu | grep -E "Model name" | head -1
export TUITUNE_MERGE_ADAPTERS=1
if [ "$G" = h200 ]; then
  timeout 220 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --steps 8 --repeat 2 --json $M/bench-llama-8b-qlora-offloaded-$G-$D.json" \
    2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-400; elapsed; pack_logs; exit
fi
start=$SECONDS
timeout 260 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --cuda-graphs on --baseline none --steps 12 --trainer --profile 1 --json $M/bench-llama-1b-qlora-offloaded-graphs-lent-trainer-$G-$D-s23-quick-exit.json" \
  2>&1 | tee $L/bench1b-lent-trainer.log | grep -E "^tuitune  |^  (kernels|stock) |^  train| peak = max|Traceback|Error" | cut -c1-120
echo "rc ${PIPESTATUS[0]}, wall $((SECONDS - start)) s"; elapsed
# The step-start gap (log sync -> first layer kernel) decides the lagged-log lever (NOTES #22 "Next" 3).
grep -E -A14 "profile:" $L/bench1b-lent-trainer.log | cut -c1-160 | head -70
# Session 24's f431346 (the peak derived from the lent-pool parts, read once) has its GPU test here.
timeout 120 python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore tests/kernels/test_layer_graphs.py \
  > $L/layer-graph-tests.log 2>&1
echo "layer graph tests rc $?"; tail -2 $L/layer-graph-tests.log; grep -E "^(FAILED|ERROR)|^E " $L/layer-graph-tests.log | head; elapsed
pack_logs
