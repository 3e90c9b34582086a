#!/usr/bin/env bash
# Fill .carry/ with what benchmarks/gpu_check.sh needs on a bare GPU machine (no registry,
# no network there): the reference implementation's wheel and Fashion-MNIST's four files.
#
# Run it here, on a machine with the network or the files, from any folder:
#
#     bash benchmarks/gpu_carry.sh            # about 30 MB into <repo>/.carry/
#
# It fills
#
#     .carry/whl/tsimcne-0.3.12-py3-none-any.whl     the reference (pure Python, about 20 kB),
#                                                    from $SIMCNE_REFERENCE_WHEEL, else a copy
#                                                    in /tmp/whl/, else `pip download`
#     .carry/fashion-mnist/*-ubyte.gz                 Fashion-MNIST, 70,000 images (about 30 MB),
#                                                    from $SIMCNE_DATA(/fashion-mnist) or Debian's
#                                                    /usr/share/datasets/fashion-mnist
#                                                    (`apt-get install dataset-fashion-mnist`)
#
# and checks the files (the wheel opens as a zip and holds tsimcne; each .gz holds the IDX
# header and length of its part of Fashion-MNIST). .carry/ is ignored by git (.gitignore has /.carry/; where it does not, this script
# adds it to .git/info/exclude), so it travels only when a call names it:
#
#     device tool, run:  command "bash benchmarks/gpu_check.sh"   carry [".carry"]   timeout_s 560
#
# The device tool sends the checkout its session was started in (not a helper's worktree):
# run this script in that checkout. Files are copied, never linked (a link travels as a link).
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "gpu_carry.sh: unknown argument '$1': expected no argument, or --help" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CARRY=$ROOT/.carry
WHEEL=tsimcne-0.3.12-py3-none-any.whl
PY=${PYTHON:-python3}
mkdir -p "$CARRY/whl" "$CARRY/fashion-mnist"

# 1. the reference wheel
if [ ! -f "$CARRY/whl/$WHEEL" ]; then
  if [ -n "${SIMCNE_REFERENCE_WHEEL:-}" ]; then
    cp "$SIMCNE_REFERENCE_WHEEL" "$CARRY/whl/$WHEEL"
  elif [ -f "/tmp/whl/$WHEEL" ]; then
    cp "/tmp/whl/$WHEEL" "$CARRY/whl/$WHEEL"
  else
    "$PY" -m pip download -q --no-deps tsimcne==0.3.12 -d "$CARRY/whl"
  fi
fi
# exactly one wheel: gpu_check.sh installs .carry/whl/*.whl, and two versions stop pip
others=$(find "$CARRY/whl" -name '*.whl' ! -name "$WHEEL" | wc -l)
if [ "$others" -ne 0 ]; then
  echo "gpu_carry.sh: $CARRY/whl holds other wheels besides $WHEEL: expected that one alone," \
       "got $others more; remove them." >&2
  exit 1
fi
"$PY" - "$CARRY/whl/$WHEEL" <<'EOF'
import sys, zipfile
path = sys.argv[1]
try:
    names = zipfile.ZipFile(path).namelist()
except (OSError, zipfile.BadZipFile) as err:
    sys.exit(f"gpu_carry.sh: {path} is not a readable wheel: {err}")
if "tsimcne/tsimcne.py" not in names:
    sys.exit(f"gpu_carry.sh: {path} lacks tsimcne/tsimcne.py: expected the tsimcne wheel")
EOF

# 2. Fashion-MNIST's four files, checked against the published MD5 sums
FILES="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
SOURCES=""
[ -n "${SIMCNE_DATA:-}" ] && SOURCES="$SIMCNE_DATA/fashion-mnist $SIMCNE_DATA"
SOURCES="$SOURCES /usr/share/datasets/fashion-mnist"
for f in $FILES; do
  [ -f "$CARRY/fashion-mnist/$f" ] && continue
  for src in $SOURCES; do
    if [ -f "$src/$f" ]; then cp "$src/$f" "$CARRY/fashion-mnist/$f"; break; fi
  done
  if [ ! -f "$CARRY/fashion-mnist/$f" ]; then
    echo "gpu_carry.sh: Fashion-MNIST's $f was not found: expected it in one of $SOURCES." \
         "Install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or" \
         "set SIMCNE_DATA to a folder holding the four .gz files." >&2
    exit 1
  fi
done
"$PY" - "$CARRY/fashion-mnist" <<'EOF'
import gzip, struct, sys
from pathlib import Path
# Debian's files are recompressed (their .gz differ from the published MD5 sums): check
# what they hold, the IDX headers and lengths, instead
folder = Path(sys.argv[1])
for prefix, n in (("train", 60000), ("t10k", 10000)):
    for kind, magic, dims, item in (("images", 2051, (n, 28, 28), 784), ("labels", 2049, (n,), 1)):
        path = folder / f"{prefix}-{kind}-idx{len(dims)}-ubyte.gz"
        try:
            data = gzip.decompress(path.read_bytes())
        except (OSError, EOFError) as err:
            sys.exit(f"gpu_carry.sh: {path} cannot be read as gzip: {err}")
        head = struct.unpack(f">{1 + len(dims)}I", data[: 4 + 4 * len(dims)])
        if head != (magic, *dims) or len(data) != 4 + 4 * len(dims) + n * item:
            sys.exit(f"gpu_carry.sh: {path} is not Fashion-MNIST's {prefix} {kind}: expected "
                     f"the IDX header {(magic, *dims)} and {n * item} bytes of data, got "
                     f"{head} and {len(data) - 4 - 4 * len(dims)} bytes.")
EOF

# 3. ignored by git, so that it travels only when carried
if ! git check-ignore -q "$CARRY" 2>/dev/null; then
  if git rev-parse --git-dir >/dev/null 2>&1; then
    exclude=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$exclude")"
    echo "/.carry/" >>"$exclude"
    echo "gpu_carry.sh: added /.carry/ to $exclude (git did not ignore it)"
  fi
fi

du -sh "$CARRY" | sed 's/^/gpu_carry.sh: ready, /'
echo "gpu_carry.sh: now call the device tool's run with command 'bash benchmarks/gpu_check.sh'," \
     "carry [\".carry\"], timeout_s 560"
