#!/usr/bin/env bash
# Before/after on one card in one call: llama-1b offloaded eager (launch-bound), HEAD (before) against
# the working tree (the dequantization's kept launch; adapter gradients in float32 from their GEMMs).
source .device/setup.sh
L=$OUT/logs
for t in main work; do
  ab $t bench --shape llama-1b --checkpointing offloaded --baseline none --steps 14 2>&1 | tee $L/ab-1b-offloaded-$t.log | grep -E "^tuitune  |timed steps" | sed "s/^/$t: /" | cut -c1-200
done
echo "elapsed $SECONDS s"
