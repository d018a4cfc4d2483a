#!/usr/bin/env bash
# session 9, first call: GPU tests of the grouped GEMMs, kept dequantized weights and the shared NF4
# block-scale helper; 8b none on the words tree (7ce0c6c, before the grouped GEMMs) as the A of an A/B;
# 8b auto with stock and every policy on HEAD, then `tuitune train` kernels on/off (criteria 1, 4, 6).
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=2026-12-06
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_lora.py tests/kernels/test_nf4.py 2>&1 | tail -5 | tee $L/test_lora_nf4.log
timeout 90 bash -c "$(declare -f ab); ab words bench --shape llama-8b --checkpointing none --baseline none --steps 8" 2>&1 | tee $L/ab8b-none-words.log | grep -E "^tuitune|median"
timeout $((590 - SECONDS)) python3 -P -m tuitune bench --shape llama-8b --checkpointing auto --steps 8 --trainer --json $M/bench-llama-8b-qlora-auto-trainer-$D.json 2>&1 | tee $L/bench8b-auto-trainer.log | grep -v "^\s*$" | tail -30
save_triton_cache
echo "elapsed $SECONDS s"
