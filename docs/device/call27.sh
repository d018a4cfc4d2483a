#!/usr/bin/env bash
# Did e0274ac/5567aeb (stacked A casts) move the launch-bound step? 37e98d8 (old) against HEAD (main),
# llama-1b offloaded eager, alternated twice on one card in one call.
source .device/setup.sh
L=$OUT/logs
for t in old main old main; do
  ab $t bench --shape llama-1b --checkpointing offloaded --baseline none --steps 14 2>&1 | tee -a $L/ab-1b-offloaded-$t.log | grep -E "^tuitune  |timed steps" | sed "s/^/$t: /" | cut -c1-200
done
nproc; uptime
echo "elapsed $SECONDS s"
