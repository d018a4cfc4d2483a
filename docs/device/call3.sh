#!/usr/bin/env bash
# session 8, short call: GPU tests of the grouped GEMMs and the kept dequantized weights; 8b none A/B: words tree vs main (groups) vs main --dequantized
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs
timeout 70 python3 -m pytest -q -x -p no:cacheprovider tests/kernels/test_lora.py tests/kernels/test_nf4.py 2>&1 | tail -4 | tee $L/test_lora.log
ab words bench --shape llama-8b --checkpointing none --baseline none --steps 6 2>&1 | tee $L/ab8b-none-words.log | grep -E "^tuitune|median"
python3 -P -m tuitune bench --shape llama-8b --checkpointing none --baseline none --steps 6 2>&1 | tee $L/ab8b-none-groups.log | grep -E "^tuitune|median"
python3 -P -m tuitune bench --shape llama-8b --checkpointing none --baseline none --steps 6 --dequantized 2>&1 | tee $L/ab8b-none-dequantized.log | grep -E "^tuitune|median|dequantized"
[ $SECONDS -lt 150 ] && ab words bench --shape llama-8b --checkpointing offloaded --baseline none --steps 6 2>&1 | tee $L/ab8b-offloaded-words.log | grep -E "^tuitune|median"
[ $SECONDS -lt 175 ] && python3 -P -m tuitune bench --shape llama-8b --checkpointing offloaded --baseline none --steps 6 2>&1 | tee $L/ab8b-offloaded-groups.log | grep -E "^tuitune|median"
echo "elapsed $SECONDS s"
