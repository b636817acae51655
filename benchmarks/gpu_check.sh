#!/usr/bin/env bash
# One prepared device check: every speed figure that matters on a GPU, measured side by side, in one file.
#
#   bash benchmarks/gpu_check.sh [--device auto|cpu|cuda|cuda:N] [--out FILE] [--smoke]
#
# Full size (one GPU, at most 8 minutes): image extraction of a ViT-B/16 and a DINOv2-base-sized ViT-B/14
# (random weights, the same architectures; 1,024 JPEGs generated on the spot, decoding included; JPEGs decoded
# on the GPU and the batch size chosen from free GPU memory) against a naive fp32 loop and against the
# forward-only ceiling, and ViT-B/16 again with Pillow decoding in workers (what GPU decoding buys); text
# extraction against sentence-transformers on the same device (all-MiniLM-L6-v2 from PyPI and a
# BERT-base-sized model); early-fusion head training (50,000 x (4,096 + 768), batch 64, data resident on the
# GPU) against the original framework's DataLoader loop and a plain in-memory loop; the report's bootstrap
# (20,000 rows x 48 arrays x 1,000 resamples) on the GPU against numpy.
# --smoke: the same steps on tiny sizes and models (under 2 minutes on a CPU; what CI runs).
#
# Output: FILE (default gpu_check.txt) holds `section.name: value` lines only, the device and its name
# first; the full log of each step is beside it (FILE.log). A step that fails or runs out of its time
# writes `section.error: ...` and the others still run. The exit status is the number of failed steps.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
device=auto
out=gpu_check.txt
smoke=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --smoke) smoke=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
py="${PYTHON:-python3}"
log="$out.log"
: > "$out"
: > "$log"
failed=0

step() {  # step SECTION SECONDS script args...
  local section="$1" limit="$2"; shift 2
  local t0=$SECONDS
  echo "### $section: $*" >> "$log"
  timeout "$limit" "$py" "$here/$1" "${@:2}" --device "$device" > "$out.step" 2>> "$log"
  local rc=$?
  cat "$out.step" >> "$log"
  grep -E '^[A-Za-z0-9_.]+: ' "$out.step" | sed "s/^/$section./" >> "$out"
  if [ $rc -ne 0 ]; then
    echo "$section.error: exit $rc$([ $rc -eq 124 ] && echo " (ran past ${limit}s)") - see $log" >> "$out"
    failed=$((failed + 1))
  fi
  echo "$section.seconds: $((SECONDS - t0))" >> "$out"
  rm -f "$out.step"
}

if [ $smoke -eq 1 ]; then
  echo "mode: smoke" >> "$out"
  step images 60 extract_images.py --n 24 --repeats 1 --batch-size auto --naive-n 8 --models test_vit,test_vit2 --threads 1
  step images_device_decode 45 extract_images.py --n 16 --repeats 1 --batch-size 8 --naive-n 4 --models test_vit \
    --decode device --threads 1
  step text 60 extract_text.py --n 64 --repeats 1 --batch-size 16 --threads 1
  step heads 60 train_heads.py --n 2000 --d-text 128 --d-image 32 --repeats 1 --warmup 0 --workers 2
  step bootstrap 30 bootstrap.py --n 300 --models 4 --resamples 100 --repeats 1
else
  echo "mode: full" >> "$out"
  # decoding: auto = JPEGs decoded on the GPU (nvJPEG); batch size from free GPU memory
  step images 180 extract_images.py --n 1024 --repeats 3 --batch-size auto --naive-n 64 \
    --models vit_base_patch16_224,vit_base_patch14_dinov2
  step images_pil_decode 60 extract_images.py --n 1024 --repeats 2 --batch-size auto --naive-n 16 \
    --models vit_base_patch16_224 --decode pil
  step text 50 extract_text.py --n 4000 --repeats 3 --batch-size 128
  step text_base 60 extract_text.py --n 4000 --repeats 3 --batch-size 128 --model bert-base-random
  step heads 90 train_heads.py --n 50000 --d-text 4096 --d-image 768 --repeats 2 --warmup 1 --workers 2
  step bootstrap 25 bootstrap.py --n 20000 --models 48 --resamples 1000 --repeats 3
fi
echo "failed_steps: $failed" >> "$out"
cat "$out"
exit $failed
