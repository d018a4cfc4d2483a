#!/usr/bin/env bash
# session 10, first call. On an H200: llama-8b `auto` with stock and every policy (criterion 4 wants it
# on an H200). On any card: the kernel tests that failed under 8 xdist workers in session 9, alone in one
# process with tracebacks, on HEAD; then, if time is left, the checkpointing/graph ones on the words tree
# (7ce0c6c, before the grouped LoRA GEMMs). Needs `prepare_ab.sh words=7ce0c6c`.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
if [[ $GPU == *H200* ]]; then
  timeout 300 python3 -P -m tuitune bench --shape llama-8b --checkpointing auto --steps 8 --json $M/bench-llama-8b-qlora-auto-h200-$D.json 2>&1 | tee $L/bench8b-auto-h200.log | grep -v "^\s*$" | tail -18
fi
T="tests/kernels/test_activation_checkpointing.py tests/kernels/test_layer_graphs.py tests/kernels/test_glu.py"
timeout $((560 - SECONDS)) python3 -m pytest -q -p no:cacheprovider --tb=short -rf -W ignore --durations=15 $T 2>&1 | tail -80 | tee $L/failing-head.log
if [ $SECONDS -lt 430 ]; then
  cp -r tests pyproject.toml .device/ab/words/
  (cd .device/ab/words && PYTHONPATH=/tmp/site timeout $((570 - SECONDS)) python3 -m pytest -q -p no:cacheprovider --tb=line -rf -W ignore \
    tests/kernels/test_activation_checkpointing.py tests/kernels/test_layer_graphs.py 2>&1 | tail -30 | tee $L/failing-words.log)
fi
save_triton_cache
echo "elapsed $SECONDS s"
