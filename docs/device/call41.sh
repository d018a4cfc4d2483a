#!/usr/bin/env bash
# Session 17, first call (~430 s): the tree without the LoRA GLU kernel (01d7ac1: the MLP's GEMMs add the
# adapters again; kept q/k/v stay). GPU kernel suite; criterion 1 with stock (--repeat 2); one profiled 8b
# step (kinds, longest kernels, longest compute gaps) with the kept q/k/v and without (TUITUNE_KEEP_QKV=0:
# do the kept tensors' host copies hold the compute stream up?); criterion 2 with stock. Logs come back as
# one logs.tgz (the tool returns only a few files). Trees: bash docs/device/prepare_ab.sh.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout 110 python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels tests/trainer/test_optimizer.py > $L/kernels-n8.log 2>&1
echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -12
grep -A12 "^E  " $L/kernels-n8.log | head -30
echo "elapsed $SECONDS s"
run() { local t=$1; shift; env PYTHONPATH=$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune bench "$@"; }
timeout 200 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --steps 8 --repeat 2 --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s17.json" \
  2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-400
echo "elapsed $SECONDS s"
for kq in 1 0; do
  TUITUNE_KEEP_QKV=$kq timeout 70 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --baseline none --steps 4 --profile 1" \
    > $L/profile-kqv$kq.txt 2>&1; grep -A60 "^tuitune profile" $L/profile-kqv$kq.txt | grep -v "^\s*$" | head -56 | cut -c1-170
  grep -E "timed steps" $L/profile-kqv$kq.txt | grep -oE "timed steps.*" | head -1
  echo "elapsed $SECONDS s"
done
timeout 80 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --steps 20 --json $M/bench-llama-1b-qlora-offloaded-$G-$D-s17.json" \
  2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-300
echo "elapsed $SECONDS s"
save_triton_cache; tar -czf $OUT/logs.tgz -C $OUT logs && rm -rf $L
