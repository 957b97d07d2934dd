#!/usr/bin/env bash
# The prepared device check of issue #27, in one call of at most 10 minutes (9 of work, 1 spare):
#
#   device run, timeout_s 600:   bash benchmarks/gpu_check.sh
#
# On the device machine (python3 with CUDA torch, click, tqdm, pytest; no install, no dlib) it runs from
# the checkout with PYTHONPATH=. and writes at most 8 files to $OUT:
#   env.txt            GPU, driver, torch / CUDA / cuDNN versions
#   tests.txt          the CUDA tests of tests/test_engine.py (capture replays the eager step; a failed
#                      capture falls back to eager steps)
#   train_speed.txt    benchmarks/train_speed.py --device cuda: naive loop / the loop before the engine /
#   train_speed.json   the engine eager / the engine in one CUDA graph, batch 64, images/s, GPU utilization
#   train_speed_stack.json  the same for mini_xception_cbam with 4 runs stacked in one graphed model beside
#                      (--stack 4: does stacking a grid's runs pay?), in a process of its own: a failed capture
#                      leaves the process's CUDA state unfit for further captures
#   train100.txt       fer-models train, 100 epochs of a FER2013-sized set, the time it took (or the epochs
#   train100.jsonl     it reached by its deadline, and the 100-epoch time they project); its log.jsonl
#   grid.txt           fer-models benchmark --budget full --tables 3 --parallel K for the time left
#
# The FER2013 CSV (94 MB) is over the 64 MiB a call may carry, so the training runs use synthetic pixels in
# FER2013's shape and split sizes (28,709 / 3,589 / 3,589 rows): speed does not depend on the content,
# accuracy here means nothing. GPU_CHECK_DEVICE=cpu GPU_CHECK_SMOKE=1 runs the same plumbing on a CPU in about
# 2 minutes (tiny sizes) to check the script itself.
set -u
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
DEVICE=${GPU_CHECK_DEVICE:-cuda}
SMOKE=${GPU_CHECK_SMOKE:-0}
BUDGET=${GPU_CHECK_SECONDS:-540}
START=$SECONDS
left() { echo $((BUDGET - (SECONDS - START))); }
PY=${PYTHON:-python3}
WORK=$(mktemp -d)

{
  date -u
  nvidia-smi 2>&1 || echo "nvidia-smi: not found"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')"
  nproc
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

echo "== CUDA tests ($(left) s left)"
timeout -k 10 120 $PY -m pytest -q -p no:cacheprovider tests/test_engine.py -k "cuda or capture" 2>&1 | tee "$OUT/tests.txt"

echo "== train_speed ($(left) s left)"
if [ "$SMOKE" = 1 ]; then speed_args=(--steps 2 --repeats 1 --warmup 1); else speed_args=(--steps 50 --repeats 5 --warmup 10); fi
timeout -k 10 200 $PY benchmarks/train_speed.py --device "$DEVICE" --loops --models mini_xception_cbam mini_xception_cbam_paper \
  "${speed_args[@]}" --json "$OUT/train_speed.json" 2>&1 | tee "$OUT/train_speed.txt"
echo "== train_speed --stack 4 ($(left) s left)" | tee -a "$OUT/train_speed.txt"
timeout -k 10 90 $PY benchmarks/train_speed.py --device "$DEVICE" --loops --models mini_xception_cbam --stack 4 \
  "${speed_args[@]}" --json "$OUT/train_speed_stack.json" 2>&1 | tee -a "$OUT/train_speed.txt"

echo "== a FER2013-sized set of synthetic pixels ($(left) s left)"
$PY - "$WORK/fer_synthetic.csv" "$SMOKE" <<'EOF'
import sys
import numpy as np
path, smoke = sys.argv[1], sys.argv[2] == "1"
sizes = (("Training", 28709), ("PublicTest", 3589), ("PrivateTest", 3589))
if smoke:
    sizes = tuple((u, n // 100) for u, n in sizes)
rng = np.random.default_rng(0)
with open(path, "w") as f:
    f.write("emotion,pixels,Usage\n")
    for usage, n in sizes:
        pixels = rng.integers(0, 256, (n, 48 * 48))
        labels = rng.integers(0, 7, n)
        f.writelines(f"{y},{' '.join(map(str, p))},{usage}\n" for y, p in zip(labels, pixels))
print(path, sum(n for _, n in sizes), "rows")
EOF

echo "== 100 epochs ($(left) s left)"
epochs=100; [ "$SMOKE" = 1 ] && epochs=2
limit=$(( $(left) - 150 )); [ $limit -lt 60 ] && limit=60
t0=$SECONDS
timeout -k 10 $limit $PY -m fer_models train --data "$WORK/fer_synthetic.csv" --out "$WORK/run100" --epochs $epochs \
  --device "$DEVICE" --no-progress > "$WORK/train100.log" 2>&1
rc=$?
{
  echo "fer-models train --epochs $epochs --device $DEVICE: exit $rc after $((SECONDS - t0)) s (limit $limit s)"
  grep -m 3 -E "CUDA graph|captured" "$WORK/train100.log"  # captured, or why not (printed in epoch 1)
  tail -n 5 "$WORK/train100.log"
  $PY - "$WORK/run100/log.jsonl" "$epochs" <<'EOF'
import json, sys
path, epochs = sys.argv[1], int(sys.argv[2])
rows = []
try:
    for line in open(path):
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line cut off by the timeout
            pass
except OSError:
    pass
if not rows:
    print("no epoch finished")
    sys.exit()
secs = [r["train_seconds"] + r.get("val_seconds", 0.0) for r in rows]
later = secs[1:] or secs
per = sum(later) / len(later)
print(f"{len(rows)} epochs: first {secs[0]:.1f} s (cuDNN autotuning), then {per:.2f} s each "
      f"({rows[-1]['images_per_s']:.0f} images/s, cuda_graph {rows[-1].get('cuda_graph')}); "
      f"{epochs} epochs: {secs[0] + per * (epochs - 1):.0f} s projected")
EOF
} 2>&1 | tee "$OUT/train100.txt"
cp "$WORK/run100/log.jsonl" "$OUT/train100.jsonl" 2>/dev/null

echo "== the Table 3 grid, 4 runs at a time, for the time left ($(left) s left)"
limit=$(( $(left) - 20 ))
if [ $limit -gt 60 ]; then
  budget=full; [ "$SMOKE" = 1 ] && budget=smoke
  t0=$SECONDS
  timeout -k 10 $limit $PY -m fer_models benchmark --fer "$WORK/fer_synthetic.csv" --out "$WORK/grid" --budget $budget \
    --tables 3 --parallel 4 --write "$WORK/grid/tables.md" > "$WORK/grid.log" 2>&1
  rc=$?
  { echo "fer-models benchmark --budget $budget --tables 3 --parallel 4: exit $rc after $((SECONDS - t0)) s (limit $limit s)"
    grep -E "^\[|done|ETA|finished|CUDA graph|captured" "$WORK/grid.log" | tail -n 40
    ls "$WORK/grid/runs" 2>/dev/null | while read -r r; do
      n=$(wc -l < "$WORK/grid/runs/$r/log.jsonl" 2>/dev/null || echo 0); echo "$r: $n epochs"; done
  } 2>&1 | tee "$OUT/grid.txt"
else
  echo "no time left for the grid" | tee "$OUT/grid.txt"
fi
echo "total $((SECONDS - START)) s"
rm -rf "$WORK"
