#!/usr/bin/env bash
# Written in session 25, still to run (~320 s + the tests): where does `tuitune train` lose 8% against
# the bench at llama-8b (call60: 11,135 against 12,096 tokens/s, 29 ms a step, no graphs)? One profiled
# step of the bench's tuitune path and of each trainer run (kernels on and off), printed side by side:
# host gaps, copies, the clip, the loss.
# Criterion 6 at 8b needs the kernels-on trainer at 2x its kernels-off run (6,602), beyond the bench.
source .device/setup.sh; source .device/session17.sh
lscpu | grep -E "Model name" | head -1
export TUITUNE_MERGE_ADAPTERS=1
start=$SECONDS
timeout 330 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --baseline none --steps 10 --trainer --profile 1 --json $M/bench-llama-8b-qlora-offloaded-trainer-profile-$G-$D.json" \
  2>&1 | tee $L/bench8b-trainer-profile.log | grep -E "^tuitune  |^  (kernels|stock) |^  train| peak = max|Traceback|Error" | cut -c1-120
echo "rc ${PIPESTATUS[0]}, wall $((SECONDS - start)) s"; elapsed
# GPU breakdowns, then the host's areas (the whole profiles, top functions included, are in the logs)
grep -E -A21 "profile: [0-9]+ steps|^tuitune profile" $L/bench8b-trainer-profile.log | grep -v "^\s*$" | cut -c1-110 | head -75
grep -E -A15 "^host, under cProfile" $L/bench8b-trainer-profile.log | grep -v "^\s*$" | cut -c1-90 | head -50
# Session 24's f431346 (the peak derived from the lent-pool parts, read once) has its GPU test here, and
# session 26's batch facts theirs (on a GPU: the patched step reads nothing back, equal losses and logs).
timeout $((580 - SECONDS)) python3 -m pytest -q -p no:cacheprovider --tb=short -W ignore tests/kernels/test_layer_graphs.py \
  tests/trainer/test_lagged_log.py tests/trainer/test_batch_facts.py > $L/layer-graph-tests.log 2>&1
echo "layer graph + lagged log + batch facts tests rc $?"; tail -2 $L/layer-graph-tests.log; grep -E "^(FAILED|ERROR)|^E " $L/layer-graph-tests.log | head; elapsed
pack_logs
