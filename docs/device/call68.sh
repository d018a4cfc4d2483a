#!/usr/bin/env bash
# Session 27's first call on an H100 (~540 s): does anything still make the llama-1b trainer's step wait
# for the GPU, now that the collator finds what the patched model read back at each step's start
# (batch_facts.py: the label rows, the CPU token ids for the offloaded embeddings, no padding)?
# docs/device/syncprobe names each waiting call's stack in two steps of the bench and of both trainer
# runs (work tree). Then `tuitune train` (bench --trainer): work, base (1c34d4c: before the facts), and
# work with TUITUNE_LAGGED_LOG=0 (what the lag gives once nothing else waits). Trees:
# bash docs/device/prepare_ab.sh base=1c34d4c
source .device/setup.sh; source .device/session17.sh
export TUITUNE_MERGE_ADAPTERS=1
probed() { env PYTHONPATH=$PWD/.device/syncprobe:$PWD/.device/ab/work:/tmp/site python3 -P -m tuitune bench "$@"; }
SYNCPROBE_LOG=$L/syncs.txt timeout 170 bash -c "$(declare -f probed); probed --shape llama-1b --checkpointing offloaded --cuda-graphs on --baseline none --steps 12 --trainer" \
  > $L/bench1b-syncprobe.log 2>&1; echo "rc $?"; elapsed
grep -E "^==|^  [0-9]+x" -A4 $L/syncs.txt | cut -c1-140 | head -100
trainer1b() {  # tree, label, then env settings
  local t=$1 tag=$2; shift 2
  env "$@" timeout 115 bash -c "$(declare -f run); run $t --shape llama-1b --checkpointing offloaded --cuda-graphs on --baseline none --steps 12 --trainer --json $M/bench-llama-1b-qlora-offloaded-graphs-lent-trainer-$G-$D-$tag.json" \
    2>&1 | tee $L/bench1b-trainer-$tag.log | grep -E "^tuitune  |^  (kernels|stock) |^  train|Traceback|Error" | cut -c1-120 | sed "s/^/$tag: /"
  elapsed
}
trainer1b work facts TUITUNE_LAGGED_LOG=1
trainer1b base nofacts TUITUNE_LAGGED_LOG=1
[ $SECONDS -lt 470 ] && trainer1b work facts-nolag TUITUNE_LAGGED_LOG=0
pack_logs
