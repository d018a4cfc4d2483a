#!/usr/bin/env bash
# session 9, second call: `tuitune train` kernels on/off beside the bench at llama-8b auto (criterion 6);
# the whole kernel suite on 4 workers and the GPU convergence tests (criterion 9).
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=2026-12-06
timeout 200 python3 -m pytest -q -p no:cacheprovider -n 4 tests/kernels --durations=8 2>&1 | tail -22 | tee $L/kernels.log
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/convergence --durations=6 2>&1 | tail -14 | tee $L/convergence.log
timeout $((585 - SECONDS)) python3 -P -m tuitune bench --shape llama-8b --checkpointing none --dequantized --steps 8 --trainer --json $M/bench-llama-8b-qlora-none-dequantized-trainer-$D.json 2>&1 | tee $L/bench8b-trainer.log | grep -v "^\s*$" | tail -24
save_triton_cache
echo "elapsed $SECONDS s"
