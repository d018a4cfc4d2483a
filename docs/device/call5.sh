#!/usr/bin/env bash
# session 9, second call: llama-1b offloaded with stock (criterion 2); the whole kernel suite on 8
# workers (compiles are CPU-bound) and the GPU convergence tests (criterion 9).
source .device/setup.sh
M=$OUT/docs/measurements; L=$OUT/logs; D=2026-12-06
timeout 150 python3 -P -m tuitune bench --shape llama-1b --checkpointing offloaded --steps 20 --json $M/bench-llama-1b-qlora-offloaded-$D.json 2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -10
timeout 240 python3 -m pytest -q -p no:cacheprovider -n 8 tests/kernels --durations=8 2>&1 | tail -22 | tee $L/kernels.log
timeout $((585 - SECONDS)) python3 -m pytest -q -p no:cacheprovider tests/convergence --durations=6 2>&1 | tail -14 | tee $L/convergence.log
save_triton_cache
echo "elapsed $SECONDS s"
