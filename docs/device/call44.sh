#!/usr/bin/env bash
# Session 17 (~480 s), call42 and call43 in one for a short budget: 8b offloaded, 10 steps each, of
# before (bfc721d: the MLP without the LoRA GLU kernel), work (the offloader's newest entry held on
# the GPU) and work with TUITUNE_EMBED_GATHER=device (the GPU gathers the embedding rows from the
# pinned table); the fastest (by median) runs criterion 1 with stock (--repeat 2) and criterion 2 with
# stock; then one profiled 8b step of it (kinds, longest kernels, gaps; then a GPU-only timeline);
# then the GPU kernel suite with the time left. Logs: one logs.tgz. Trees: prepare_ab.sh before=bfc721d.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
run() { local t=$1; shift; env PYTHONPATH=$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune bench "$@"; }
arm() { case $1 in before) echo "before host";; work) echo "work host";; device) echo "work device";; esac; }
for a in before work device; do
  set -- $(arm $a)
  TUITUNE_EMBED_GATHER=$2 timeout 60 bash -c "$(declare -f run); run $1 --shape llama-8b --checkpointing offloaded --baseline none --steps 10" \
    2>&1 | tee -a $L/ab-8b-$a.log | grep -E "^tuitune  |timed steps" | grep -oE "^tuitune .*|timed steps.*" | sed "s/^/$a: /"
done
med() { grep -oE "timed steps [0-9,.]+ ms median" $L/ab-8b-$1.log | grep -oE "[0-9,.]+ ms" | tr -d ", ms" | sort -n | head -1; }
FAST=$(for a in before work device; do m=$(med $a); echo "${m:-99999} $a"; done | sort -n | head -1 | cut -d" " -f2)
echo "medians: before $(med before), work $(med work), device $(med device) -> $FAST"; echo "elapsed $SECONDS s"
set -- $(arm $FAST); T=$1; export TUITUNE_EMBED_GATHER=$2
timeout 200 bash -c "$(declare -f run); run $T --shape llama-8b --checkpointing offloaded --steps 8 --repeat 2 --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s17.json" \
  2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-400
echo "elapsed $SECONDS s"
timeout 80 bash -c "$(declare -f run); run $T --shape llama-1b --checkpointing offloaded --steps 20 --json $M/bench-llama-1b-qlora-offloaded-$G-$D-s17.json" \
  2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-300
echo "elapsed $SECONDS s"
timeout 80 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --baseline none --steps 4 --profile 1" \
  > $L/profile-work.txt 2>&1; grep -A80 "^tuitune profile" $L/profile-work.txt | grep -v "^\s*$" | head -64 | cut -c1-150
echo "elapsed $SECONDS s"
END=${END:-585}  # seconds into the call by which the suite must be done (a short budget passes less)
if [ $SECONDS -lt $((END - 115)) ]; then
  TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout $((END - SECONDS)) python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels tests/trainer/test_optimizer.py > $L/kernels-n8.log 2>&1
  echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -12
  grep -A12 "^E  " $L/kernels-n8.log | head -30
fi
echo "elapsed $SECONDS s"
save_triton_cache; tar -czf $OUT/logs.tgz -C $OUT logs && rm -rf $L
