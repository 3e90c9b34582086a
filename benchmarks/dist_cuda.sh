#!/usr/bin/env bash
# torchrun on a GPU machine: NCCL, global BatchNorm, speed of N GPUs against one.
# Not run yet (written where there was no GPU). Usage, from the repository root:
#
#     bash benchmarks/dist_cuda.sh [OUT_DIR]        # about 5 minutes; results in OUT_DIR
#
# 1. the CPU tests of torchrun (gloo, 2 processes), as a baseline that the machine works;
# 2. one GPU: `simcne fit` on 20,000 random 32x32 images, resnet18, 3 epochs of stage 1,
#    global batch 512, fp32 and bf16 (seconds per stage from report.json);
# 3. with 2 or more GPUs: the same under torchrun on every GPU, NCCL + GlobalBatchNorm, and
#    how far its fp32 embedding is from the one-GPU fp32 embedding (expected: float
#    rounding, as on the CPU; bf16 differs more). One GPU cannot run 2 NCCL processes.
set -euo pipefail
OUT=${1:-${OUT:-dist-cuda-out}}
mkdir -p "$OUT"
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
nvidia-smi -L | tee "$OUT/gpus.txt" || true
echo "GPUs: $NGPU; torch $($PY -c 'import torch; print(torch.__version__, torch.version.cuda)')"

timeout 400 $PY -m pytest -q -x tests/test_dist.py 2>&1 | tail -3 | tee "$OUT/test_dist.txt"

$PY -c "import numpy as np; np.save('$OUT/random.npy', np.random.default_rng(0).integers(0, 256, (20000, 32, 32, 3), dtype=np.uint8))"
FIT=(fit "$OUT/random.npy" --backbone resnet18 --total-epochs 3 --batch-size 512 --random-state 0 --no-plots --quiet)

for prec in fp32 bf16; do
  timeout 300 $PY -m simcne "${FIT[@]}" --precision $prec --out "$OUT/gpu1-$prec"
  if [ "$NGPU" -ge 2 ]; then
    timeout 300 $PY -m torch.distributed.run --standalone --nproc_per_node="$NGPU" -m simcne \
      "${FIT[@]}" --precision $prec --out "$OUT/gpu$NGPU-$prec"
  fi
done

$PY - "$OUT" "$NGPU" <<'EOF' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
import numpy as np
out, n = Path(sys.argv[1]), int(sys.argv[2])
for prec in ("fp32", "bf16"):
    runs = [f"gpu1-{prec}"] + ([f"gpu{n}-{prec}"] if n >= 2 else [])
    base = None
    for run in runs:
        r = json.loads((out / run / "report.json").read_text())
        s1 = r["timings_s"]["stage_1"]
        ips = 3 * (20000 // 512) * 512 / s1
        line = f"{run}: {r['processes']} process(es), stage 1 {s1:.1f} s, {ips:.0f} images/s"
        if base is None:
            base, ref = ips, np.load(out / run / "embedding.npy")
        else:
            e = np.load(out / run / "embedding.npy")
            line += (f", ratio {ips / base:.2f}, max |Y{n} - Y1| {np.abs(e - ref).max():.2g}"
                     f" (extent {np.abs(ref).max():.2g})")
        print(line)
EOF
