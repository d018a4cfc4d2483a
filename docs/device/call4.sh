#!/usr/bin/env bash
# session 9, first call: GPU tests of the grouped GEMMs and kept dequantized weights; 8b none on the
# words tree (7ce0c6c, before the grouped GEMMs) as the A of an A/B; 8b auto with stock and every
# policy on HEAD (criteria 1, 4); 1b offloaded with stock (criterion 2); then the GPU convergence tests.
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=2026-12-06
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_lora.py tests/kernels/test_nf4.py 2>&1 | tail -5 | tee $L/test_lora_nf4.log
ab words bench --shape llama-8b --checkpointing none --baseline none --steps 8 2>&1 | tee $L/ab8b-none-words.log | grep -E "^tuitune|median"
python3 -P -m tuitune bench --shape llama-8b --checkpointing auto --steps 8 --json $M/bench-llama-8b-qlora-auto-$D.json 2>&1 | tee $L/bench8b-auto.log | grep -v "^\s*$" | tail -18
[ $SECONDS -lt 400 ] && python3 -P -m tuitune bench --shape llama-1b --checkpointing offloaded --steps 20 --json $M/bench-llama-1b-qlora-offloaded-$D.json 2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -8
save_triton_cache
left=$((575 - SECONDS)); echo "elapsed $SECONDS s; convergence gets ${left}s"
[ $left -gt 60 ] && timeout $left python3 -m pytest -q -p no:cacheprovider tests/convergence/test_llama_1b_qlora.py 2>&1 | tail -6 | tee $L/convergence.log
echo "elapsed $SECONDS s"
