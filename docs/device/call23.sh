#!/usr/bin/env bash
# Where the small kernels come from (criteria 1 and 2 on the H200: 8b offloaded is 2.02x, 1b offloaded
# eager 1.84x): one profiled step each, operators by GPU time and by launches, with their Python sites.
source .device/setup.sh
L=$OUT/logs
timeout 300 python3 -P docs/device/kernel_sites.py --shape llama-8b --checkpointing offloaded > $L/sites-8b-offloaded.txt 2>&1
grep -v "Warning\|warn" $L/sites-8b-offloaded.txt | head -150
timeout $((570 - SECONDS)) python3 -P docs/device/kernel_sites.py --shape llama-1b --checkpointing offloaded --rows 40 > $L/sites-1b-offloaded.txt 2>&1
grep -v "Warning\|warn" $L/sites-1b-offloaded.txt | sed -n '/by calls/,$p' | head -200
echo "elapsed $SECONDS s"
