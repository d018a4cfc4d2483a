#!/usr/bin/env bash
# Session 17 (~540 s), in place of call41 once the held last entry was written: A/B of before (
# bfc721d, the MLP without the LoRA GLU kernel) against the tree (work, 93300d5: the offloader's newest entry
# stays on the GPU, so the backward pass does not begin by waiting ~2 ms for its copy back), 8b
# offloaded, 10 steps each, twice alternating; the faster tree (work unless before's median is 1 ms
# shorter) then runs criterion 1 with stock (--repeat 2); the tree then profiles one 8b step (kinds, longest
# kernels, compute gaps and what ended them; then one with the GPU's activity alone recorded); the faster runs criterion 2 with stock; the GPU kernel suite with the
# time left. Logs come back as one logs.tgz. Trees: bash docs/device/prepare_ab.sh before=bfc721d.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
run() { local t=$1; shift; env PYTHONPATH=$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune bench "$@"; }
for t in before work before work; do
  timeout 60 bash -c "$(declare -f run); run $t --shape llama-8b --checkpointing offloaded --baseline none --steps 10" \
    2>&1 | tee -a $L/ab-8b-$t.log | grep -E "^tuitune  |timed steps" | grep -oE "^tuitune .*|timed steps.*" | sed "s/^/$t: /"
done
med() { grep -oE "timed steps [0-9,.]+ ms median" $L/ab-8b-$1.log | grep -oE "[0-9,.]+ ms" | tr -d ", ms" | sort -n | head -1; }
FAST=work
if python3 -c "import sys; sys.exit(0 if float('$(med before)') < float('$(med work)') - 1 else 1)"; then FAST=before; fi
echo "best medians: before $(med before), work $(med work) -> $FAST"; echo "elapsed $SECONDS s"
timeout 200 bash -c "$(declare -f run); run $FAST --shape llama-8b --checkpointing offloaded --steps 8 --repeat 2 --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s17.json" \
  2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-400
echo "elapsed $SECONDS s"
timeout 80 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --baseline none --steps 4 --profile 1" \
  > $L/profile-work.txt 2>&1; grep -A80 "^tuitune profile" $L/profile-work.txt | grep -v "^\s*$" | head -64 | cut -c1-150
echo "elapsed $SECONDS s"
timeout 80 bash -c "$(declare -f run); run $FAST --shape llama-1b --checkpointing offloaded --steps 20 --json $M/bench-llama-1b-qlora-offloaded-$G-$D-s17.json" \
  2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-300
echo "elapsed $SECONDS s"
if [ $SECONDS -lt 470 ]; then
  TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout $((585 - SECONDS)) python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels tests/trainer/test_optimizer.py > $L/kernels-n8.log 2>&1
  echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -12
  grep -A12 "^E  " $L/kernels-n8.log | head -30
fi
echo "elapsed $SECONDS s"
save_triton_cache; tar -czf $OUT/logs.tgz -C $OUT logs && rm -rf $L
