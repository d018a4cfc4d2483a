#!/usr/bin/env bash
# session 8, last call: GPU tests (grouped adapter GEMMs, dequantized weights); 8b none on the words tree (A/B);
# 8b auto (stock + every policy) on the working tree (groups + dequantize_once); 8b offloaded on the words tree; 1b with stock
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_lora.py tests/kernels/test_nf4.py 2>&1 | tail -5 | tee $L/test_lora.log
ab words bench --shape llama-8b --checkpointing none --baseline none --steps 8 2>&1 | tee $L/ab8b-none-words.log | grep -E "^tuitune|median"
python3 -P -m tuitune bench --shape llama-8b --checkpointing auto --steps 8 --json $M/bench-llama-8b-qlora-auto-session8b.json 2>&1 | tee $L/bench8b-auto-work.log | grep -v "^\s*$" | tail -16
ab words bench --shape llama-8b --checkpointing offloaded --baseline none --steps 8 2>&1 | tee $L/ab8b-offloaded-words.log | grep -E "^tuitune|median"
[ $SECONDS -lt 250 ] && python3 -P -m tuitune bench --shape llama-1b --checkpointing offloaded --steps 20 --json $M/bench-llama-1b-qlora-offloaded-session8.json 2>&1 | tee $L/bench1b.log | grep -v "^\s*$" | tail -8
echo "elapsed $SECONDS s"
