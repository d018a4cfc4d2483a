#!/usr/bin/env bash
# session 9, first call: GPU tests of the grouped GEMMs, kept dequantized weights and the shared NF4
# block-scale helper; 8b none on the words tree (7ce0c6c, before the grouped GEMMs) as the A of an A/B;
# 8b auto with stock and every policy on HEAD (criteria 1, 4); a profile of 8b none with kept
# dequantized weights (where the time goes now); 1b offloaded with stock if time is left (criterion 2).
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=2026-12-06
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_lora.py tests/kernels/test_nf4.py 2>&1 | tail -5 | tee $L/test_lora_nf4.log
timeout 90 bash -c "$(declare -f ab); ab words bench --shape llama-8b --checkpointing none --baseline none --steps 8" 2>&1 | tee $L/ab8b-none-words.log | grep -E "^tuitune|median"
timeout $((${LIMIT:-580} - 250)) python3 -P -m tuitune bench --shape llama-8b --checkpointing auto --steps 8 --json $M/bench-llama-8b-qlora-auto-$D.json 2>&1 | tee $L/bench8b-auto.log | grep -v "^\s*$" | tail -18
timeout $((${LIMIT:-580} - SECONDS)) python3 -P -m tuitune bench --shape llama-8b --checkpointing none --dequantized --baseline none --steps 6 --profile 1 --json $M/bench-llama-8b-qlora-none-dequantized-profile-$D.json 2>&1 | tee $L/bench8b-none-profile.log | grep -v "^\s*$" | tail -40
[ $SECONDS -lt $((${LIMIT:-580} - 100)) ] && timeout $((${LIMIT:-585} + 5 - SECONDS)) python3 -P -m tuitune bench --shape llama-1b --checkpointing offloaded --steps 20 --json $M/bench-llama-1b-qlora-offloaded-$D.json 2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -8
save_triton_cache
echo "elapsed $SECONDS s"
