#!/usr/bin/env bash
# Session 17, for a budget too short for call44 (~300 s): the tree as it would land (the MLP without
# the LoRA GLU kernel, the offloader's newest entry held on the GPU, host-side embedding gather):
# criterion 1 with stock (--repeat 2), criterion 2 with stock, then one profiled 8b step (with the
# GPU-only timeline) while time is left. Trees: bash docs/device/prepare_ab.sh before=bfc721d.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
run() { local t=$1; shift; env PYTHONPATH=$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune bench "$@"; }
timeout 200 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --steps 8 --repeat 2 --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s17.json" \
  2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-400
echo "elapsed $SECONDS s"
timeout 80 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --steps 20 --json $M/bench-llama-1b-qlora-offloaded-$G-$D-s17.json" \
  2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-300
echo "elapsed $SECONDS s"
END=${END:-400}
if [ $SECONDS -lt $((END - 60)) ]; then
  timeout $((END - SECONDS)) bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --baseline none --steps 4 --profile 1" \
    > $L/profile-work.txt 2>&1; grep -A80 "^tuitune profile" $L/profile-work.txt | grep -v "^\s*$" | head -64 | cut -c1-150
fi
echo "elapsed $SECONDS s"
tar -czf $OUT/logs.tgz -C $OUT logs && rm -rf $L
