#!/usr/bin/env bash
# Session 17, for a budget of ~200 s: the tree (work) and bfc721d (before) at 8b offloaded, 10 steps
# each, tuitune alone (stock's H200 step was 676.3 ms in session 16: 2.1x needs ~322 ms); then
# criterion 1 with stock if END leaves room. Trees: bash docs/device/prepare_ab.sh before=bfc721d.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
run() { local t=$1; shift; env PYTHONPATH=$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune bench "$@"; }
for t in work before; do
  timeout 60 bash -c "$(declare -f run); run $t --shape llama-8b --checkpointing offloaded --baseline none --steps 10" \
    2>&1 | tee -a $L/ab-8b-$t.log | grep -E "^tuitune  |timed steps" | grep -oE "^tuitune .*|timed steps.*" | sed "s/^/$t: /"
  echo "elapsed $SECONDS s"
done
END=${END:-200}
if [ $SECONDS -lt $((END - 150)) ]; then
  timeout $((END - SECONDS)) bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --steps 8 --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s17.json" \
    2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-400
fi
echo "elapsed $SECONDS s"
