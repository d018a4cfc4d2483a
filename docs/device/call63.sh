#!/usr/bin/env bash
# Session 23's last call (~300 s with session 24's --profile 1), which never started: run it first.
# The working tree adds quick_exit (every process entry point freezes the heap from an exit handler,
# after flushing open files) and preload (the trainer child and each rank import the training libraries
# with the collector paused, then freeze them): trainer children, bench children and torchrun ranks exit
# without the collector's walk, and start without its collections. On an H100: do they still exit
# cleanly on a GPU (CUDA context, the events queue), where does criterion 6 land at llama-1b (lent
# graphs) on this host, what is the lent peak made of (session 24's peak parts line), and how long is
# the trainer's step-start gap (the profile)? On an H200: criterion 1 (--repeat 2), never measured there.
source .device/setup.sh; source .device/session17.sh
lscpu | grep -E "Model name" | head -1
export TUITUNE_MERGE_ADAPTERS=1
lag_ab() {  # the 1b trainer with the log read one step late, then at once (TUITUNE_LAGGED_LOG=0)
  for lag in 1 0; do
    TUITUNE_LAGGED_LOG=$lag timeout $1 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --cuda-graphs on --baseline none --steps 12 --trainer --json $M/bench-llama-1b-qlora-offloaded-graphs-lent-trainer-$G-$D-s25-lag$lag.json" \
      2>&1 | tee $L/bench1b-lent-trainer-lag$lag.log | grep -E "^tuitune  |^  (kernels|stock) |^  train| peak = max|Traceback|Error" | cut -c1-120 | sed "s/^/lag=$lag: /"
    elapsed
  done
}
if [ "$G" = h200 ]; then
  timeout 220 bash -c "$(declare -f run); run work --shape llama-8b --checkpointing offloaded --steps 8 --repeat 2 --json $M/bench-llama-8b-qlora-offloaded-$G-$D.json" \
    2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-400; elapsed
  lag_ab 120; pack_logs; exit
fi
# Session 25: the trainer's log is read one step late (tuitune/trainer/lagged_log.py); the second run
# turns that off (TUITUNE_LAGGED_LOG=0), so the pair is the lag's A/B on one host.
start=$SECONDS
timeout 240 bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --cuda-graphs on --baseline none --steps 12 --trainer --profile 1 --json $M/bench-llama-1b-qlora-offloaded-graphs-lent-trainer-$G-$D-s25-lagged.json" \
  2>&1 | tee $L/bench1b-lent-trainer.log | grep -E "^tuitune  |^  (kernels|stock) |^  train| peak = max|Traceback|Error" | cut -c1-120
echo "rc ${PIPESTATUS[0]}, wall $((SECONDS - start)) s"; elapsed
# The step-start gap (log sync -> first layer kernel) decides the lagged-log lever (NOTES #22 "Next" 3).
grep -E -A14 "profile:" $L/bench1b-lent-trainer.log | cut -c1-140 | head -48
start=$SECONDS
TUITUNE_LAGGED_LOG=0 timeout $((480 - SECONDS)) bash -c "$(declare -f run); run work --shape llama-1b --checkpointing offloaded --cuda-graphs on --baseline none --steps 12 --trainer --json $M/bench-llama-1b-qlora-offloaded-graphs-lent-trainer-$G-$D-s25-at-once.json" \
  2>&1 | tee $L/bench1b-lent-trainer-at-once.log | grep -E "^tuitune  |^  (kernels|stock) |^  train| peak = max|Traceback|Error" | cut -c1-120 | sed "s/^/at once: /"
echo "rc ${PIPESTATUS[0]}, wall $((SECONDS - start)) s"; elapsed
pack_logs
