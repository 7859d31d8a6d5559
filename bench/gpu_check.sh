#!/usr/bin/env bash
# The GPU path in one run, under 10 minutes on one GPU:
#   1. (bench/gpu_check.py) the quick demo on CUDA at fp16, classifier and U-Net training throughput against a plain
#      PyTorch AMP loop (ratio side by side), predict's fp16 answers against fp32; writes OUT/gpu_check.json;
#   2. the training walkthrough (nbs/tutorials/01_train.ipynb, run top to bottom by .ci/walkthroughs.py) at the quick
#      preset on the device (fp16 on CUDA), on a phantom set without masks; writes OUT/walkthrough.json (seconds, ok).
# Usage: bench/gpu_check.sh [OUT]            (on a machine with a CUDA GPU)
#        bench/gpu_check.sh OUT --device cpu (a dry run of the same steps at toy sizes on the CPU; 2 takes 2-3 minutes)
# The exit status is non-zero when either step failed; step 2 runs even when step 1 failed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check_out}; shift || true
device=cuda
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
        --device) device=${args[i + 1]:-cuda} ;;
        --device=*) device=${args[i]#--device=} ;;
    esac
done
cpu=0; [[ $device == cpu ]] && cpu=1
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: no GPU visible"

# time limits: on a GPU the two steps share 10 minutes (step 1 at most 7 of them); the CPU dry run has no such goal
budget=600; t_start=$SECONDS
if ((cpu)); then limit1=600; else limit1=420; fi

# 1. the quick demo, training throughput, predict fp16 against fp32
rc1=0
PYTHONUNBUFFERED=1 timeout -k 20 "$limit1" python bench/gpu_check.py --out "$out" "$@" || rc1=$?
((rc1 == 0)) || echo "1. bench/gpu_check.py failed (exit status $rc1)" >&2

# 2. the training walkthrough at the quick preset on the device
wdir=$out/walkthrough   # data/ (phantoms without masks), runs/, out/ (the executed notebook), walkthrough.log
rm -rf "$wdir"; mkdir -p "$wdir"
if ((cpu)); then limit2=300; else limit2=$((budget - (SECONDS - t_start))); fi
ok=false; secs=null; err=
if ((cpu)); then export CUDA_VISIBLE_DEVICES=""; fi   # the notebook picks its device itself: keep the dry run on the CPU
if [[ ! -f .ci/walkthroughs.py ]]; then
    err=".ci/walkthroughs.py not found"
elif ((!cpu)) && ! python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    err="no CUDA device"
elif ((limit2 < 60)); then
    err="no time left of the 10 minutes (step 1 took $((SECONDS - t_start)) s)"
else
    t_synth=$(date +%s.%N)
    if ! python -m stroke_ct synth "$wdir/data" --no-masks --seed 0 >"$wdir/synth.log" 2>&1; then
        err="stroke-ct synth --no-masks failed (see $wdir/synth.log)"; tail -n 20 "$wdir/synth.log" >&2
    else
        echo "2. phantom set without masks: $(awk -v a="$t_synth" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s" \
             "-> $wdir/data; running the training walkthrough (quick preset, $device, at most $((limit2 - 5)) s)"
        t0=$(date +%s.%N); rc2=0
        PYTHONUNBUFFERED=1 timeout -k 20 $((limit2 - 5)) python .ci/walkthroughs.py --only train --preset quick \
            --data "$wdir/data" --runs "$wdir/runs" --out "$wdir/out" >"$wdir/walkthrough.log" 2>&1 || rc2=$?
        secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
        tail -n 30 "$wdir/walkthrough.log"
        if ((rc2 == 0)); then ok=true
        elif ((rc2 == 124 || rc2 == 137)); then err="timed out after $secs s"
        else err="exit status $rc2 (see $wdir/walkthrough.log)"; fi
    fi
fi
SECS=$secs OK=$ok DEVICE=$device ERR=$err python -c 'import json, os; e = os.environ
print(json.dumps(dict(seconds=json.loads(e["SECS"]), ok=e["OK"] == "true", device=e["DEVICE"], preset="quick", error=e["ERR"] or None)))' \
    >"$out/walkthrough.json"
echo "2. training walkthrough: ok=$ok, $secs s${err:+ ($err)}; wrote $out/walkthrough.json"
echo "total: $((SECONDS - t_start)) s"
[[ $rc1 == 0 && $ok == true ]]
