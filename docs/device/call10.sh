#!/usr/bin/env bash
# the stock path as a plain loop (the baseline) and under bf16 autocast (as the HF Trainer runs
# it), beside tuitune, at llama-8b none and standard: how much of tuitune's ratio is PEFT's float32
# adapter activations, which autocast avoids (session 9: the kernels-off trainer ran 1.29x the plain loop)
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
timeout 280 python3 -P -m tuitune bench --shape llama-8b --checkpointing none --dequantized --baseline both --steps 8 --json $M/bench-llama-8b-qlora-none-baselines-$D.json 2>&1 | tee $L/baselines-none.log | grep -v "^\s*$" | tail -12
timeout $((585 - SECONDS)) python3 -P -m tuitune bench --shape llama-8b --checkpointing standard --baseline both --steps 8 --json $M/bench-llama-8b-qlora-standard-baselines-$D.json 2>&1 | tee $L/baselines-standard.log | grep -v "^\s*$" | tail -12
echo "elapsed $SECONDS s"
