#!/usr/bin/env bash
# Session 16, second call (~570 s; ran with the glu_speed.py of a40a792, which took tiles alone). call39 showed lora_glu (B read with a stride of r) costing ~49 ms of
# an 8b step on the H200 against ~8 ms for the plain SwiGLU. The tree reads B.T coalesced; glu_speed.py
# times tiles against the plain kernel (HEAD's lora_glu too), the fastest tile is written into the
# tree's TILES, then SDPA's recompute against the kept attention through cuDNN (the faster is the tree's default), then criterion 1 (--repeat 2), the 8b profile (kinds, longest kernels, longest compute
# gaps), criterion 2, and the GPU kernel suite. Trees: bash docs/device/prepare_ab.sh before=67dee09.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
TILES_TRIED="8,128,4 4,256,4 8,256,8 16,128,8 4,512,8 2,512,4 16,256,8 8,128,2"
finish() { save_triton_cache; tar -czf $OUT/logs.tgz -C $OUT logs && rm -rf $L; }
echo "HEAD's lora_glu:"; PYTHONPATH=$PWD/.device/ab/main:/tmp/site timeout 60 python3 -P docs/device/glu_speed.py 2>&1 | tee $L/glu-speed-head.txt | grep -v Warn
echo "tree's lora_glu:"; PYTHONPATH=$PWD/.device/ab/work:/tmp/site timeout 150 python3 -P docs/device/glu_speed.py $TILES_TRIED 2>&1 | tee $L/glu-speed-work.txt | grep -v Warn
BEST=$(grep "^best " $L/glu-speed-work.txt | cut -d" " -f2)
if [ -n "$BEST" ]; then
  for f in .device/ab/work/tuitune/kernels/ops/lora_glu.py kernels/ops/lora_glu.py; do sed -i "s/^TILES = .*/TILES = ($BEST)/" $f; done
fi
grep -n "^TILES" .device/ab/work/tuitune/kernels/ops/lora_glu.py; echo "elapsed $SECONDS s"
run() { local t=$1; shift; env PYTHONPATH=$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune bench "$@"; }
# the kept attention through cuDNN against SDPA's recompute (call39: 349.7 against 357.3 ms medians, one
# 598 ms step); the default becomes cuDNN's in the tree if its median is 3 ms shorter
for ka in 0 cudnn; do
  TUITUNE_KEEP_ATTENTION=$ka timeout 60 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --baseline none --steps 10" \
    2>&1 | tee -a $L/ab-8b-ka$ka.log | grep -E "^tuitune  |timed steps" | grep -oE "^tuitune .*|timed steps.*"
done
med() { grep -oE "timed steps [0-9,.]+ ms median" $L/ab-8b-ka$1.log | grep -oE "[0-9,.]+ ms" | tr -d ", ms" | head -1; }
echo "best medians: sdpa $(med 0), cudnn $(med cudnn)"
if python3 -c "import sys; sys.exit(0 if float('$(med cudnn)') < float('$(med 0)') - 3 else 1)"; then
  for f in .device/ab/work/tuitune/trainer/kept_attention.py tuitune/trainer/kept_attention.py; do
    sed -i 's/os.environ.get("TUITUNE_KEEP_ATTENTION", "0")/os.environ.get("TUITUNE_KEEP_ATTENTION", "cudnn")/' $f; done
  echo "the tree keeps attention through cuDNN by default now"
fi
echo "elapsed $SECONDS s"
timeout 200 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --steps 8 --repeat 2 --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s16b.json" \
  2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-400
echo "elapsed $SECONDS s"
timeout 70 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --baseline none --steps 4 --profile 1" \
  > $L/profile-work.txt 2>&1; grep -B2 -A40 "^tuitune profile" $L/profile-work.txt | grep -v "^\s*$" | head -42 | cut -c1-170
echo "elapsed $SECONDS s"
timeout 80 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --steps 20 --json $M/bench-llama-1b-qlora-offloaded-$G-$D-s16b.json" \
  2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-300
echo "elapsed $SECONDS s"
if [ $SECONDS -lt 440 ]; then
  TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout $((575 - SECONDS)) python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels tests/trainer/test_optimizer.py > $L/kernels-n8.log 2>&1
  echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -12
  grep -A12 "^E  " $L/kernels-n8.log | head -30
fi
echo "elapsed $SECONDS s"
finish
