# Sourced by the session-17 calls (call44-46) after setup.sh: where results go and the steps they share.
# Trees: bash docs/device/prepare_ab.sh before=bfc721d.
M=$OUT/docs/measurements; L=$OUT/logs; D=$(date +%F)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); G=$([[ $GPU == *H200* ]] && echo h200 || echo h100)
export TRITON_CACHE_AUTOTUNING=1
run() { local t=$1; shift; env PYTHONPATH=$PWD/.device/ab/$t:/tmp/site python3 -P -m tuitune bench "$@"; }
elapsed() { echo "elapsed $SECONDS s"; }
# tuitune alone at 8b offloaded, 10 steps, on tree $1; the log is ab-8b-$2.log, its lines start "$2: "
ab8b() {
  timeout 60 bash -c "$(declare -f run); run $1 --shape llama-8b --checkpointing offloaded --baseline none --steps 10" \
    2>&1 | tee -a $L/ab-8b-$2.log | grep -E "^tuitune  |timed steps" | grep -oE "^tuitune .*|timed steps.*" | sed "s/^/$2: /"
}
# the shortest median of ab-8b-$1.log's runs, in ms
med() { grep -oE "timed steps [0-9,.]+ ms median" $L/ab-8b-$1.log | grep -oE "[0-9,.]+ ms" | tr -d ", ms" | sort -n | head -1; }
# criterion 1 (8b, --repeat ${3:-2}) and criterion 2 (1b) with stock on tree $1, within $2 s
criterion1() {
  timeout ${2:-200} bash -c "$(declare -f run); run $1 --shape llama-8b --checkpointing offloaded --steps 8 --repeat ${3:-2} --json $M/bench-llama-8b-qlora-offloaded-$G-$D-s17.json" \
    2>&1 | tee $L/bench8b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-400
}
criterion2() {
  timeout ${2:-80} bash -c "$(declare -f run); run $1 --shape llama-1b --checkpointing offloaded --steps 20 --json $M/bench-llama-1b-qlora-offloaded-$G-$D-s17.json" \
    2>&1 | tee $L/bench1b-offloaded.log | grep -v "^\s*$" | tail -7 | cut -c1-300
}
# one profiled 8b step on tree $1 (kinds, longest kernels, gaps, the GPU-only timeline), within $2 s
profile8b() {
  timeout ${2:-80} bash -c "$(declare -f run); run $1 --shape llama-8b --checkpointing offloaded --baseline none --steps 4 --profile 1" \
    > $L/profile-$1.txt 2>&1; grep -A80 "^tuitune profile" $L/profile-$1.txt | grep -v "^\s*$" | head -64 | cut -c1-150
}
# the GPU kernel suite, done by $1 seconds into the call (skipped with less than 115 s left)
kernel_suite() {
  [ $SECONDS -lt $(($1 - 115)) ] || return 0
  TUITUNE_TEST_REPORT=$L/kernels-report.txt timeout $(($1 - SECONDS)) python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -W ignore -m "not gpu_large" tests/kernels tests/trainer/test_optimizer.py > $L/kernels-n8.log 2>&1
  echo "kernels rc $?"; tail -2 $L/kernels-n8.log; grep -E "^(FAILED|ERROR)" $L/kernels-report.txt | head -12
  grep -A12 "^E  " $L/kernels-n8.log | head -30
}
pack_logs() { tar -czf $OUT/logs.tgz -C $OUT logs && rm -rf $L; }
# 8b offloaded unmerged and merged (ab8b logs "unmerged", "merged"); merged stays on only when faster
pick_merging() {
  TUITUNE_MERGE_ADAPTERS=0 ab8b work unmerged; elapsed
  ab8b work merged; elapsed
  echo "medians: unmerged $(med unmerged), merged $(med merged)"
  if [ -n "$(med merged)" ] && [ -n "$(med unmerged)" ] && \
     python3 -c "import sys; sys.exit(0 if float('$(med merged)') < float('$(med unmerged)') else 1)"; then
    export TUITUNE_MERGE_ADAPTERS=1
  else
    export TUITUNE_MERGE_ADAPTERS=0
  fi
  echo "criteria with TUITUNE_MERGE_ADAPTERS=$TUITUNE_MERGE_ADAPTERS"
}
