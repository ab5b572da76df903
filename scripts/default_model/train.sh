#!/usr/bin/env bash
# Trains the embedded default Co-Encoder from scratch on one GPU, in resumable pieces (docs/default-model.md):
#
#   python3 scripts/prepare_training_data.py            # here: corpus shards + QA train/val files into .train/
#   scripts/default_model/train.sh decoder BUILD [SECONDS]
#       stage 1: pretrain the decoder (decoder.json) on Wikipedia, State-of-the-Union and Gutenberg text; SECONDS
#       is the training-loop budget (time_budget_s), the step count is fitted to it after 25 timed steps
#   scripts/default_model/train.sh decoder_all BUILD [SECONDS], then decoder_all_more BUILD [SECONDS]
#       stage 21: a 10-layer decoder pretrained from scratch on all the training text (Wikipedia, SOTU, Gutenberg
#       00, 02, 03; decoder_all.json -> .train/decoder_all), then continued from it on 2,048-token windows
#       (decoder_all_more.json -> .train/decoder_all_more): one call each
#   scripts/default_model/train.sh co_encoder BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 2: tower (the decoder's first 3 layers, bidirectional), connector and decoder trained together on
#       reconstruction, continuation, compressed and plain-text QA and plain LM (co_encoder.json). With
#       STOP_AFTER_SECONDS the run is interrupted then (SIGINT: the step finishes and a checkpoint is saved); the
#       same command again resumes it exactly, so the run can be cut into pieces of at most 10 minutes.
#   scripts/default_model/train.sh co_encoder_more BUILD
#       stage 3: 2,600 more steps from stage 2's model with reconstruction weighted up (co_encoder_more.json) ->
#       .train/co_encoder2 (about 470 s on an H200)
#   scripts/default_model/train.sh co_encoder_long BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 4: from stage 3's model, reconstruction weighted up again, contexts of 128-512 tokens, passkey drills
#       in haystacks of up to 3,800 tokens, ratios 4/8/16 (co_encoder_long.json) -> .train/co_encoder3; resumable
#       in pieces like stage 2
#   scripts/default_model/train.sh co_encoder_final BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 5: from stage 4's model, continuation weighted up (co_encoder_final.json) -> .train/co_encoder4
#   scripts/default_model/train.sh co_encoder_lm BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 6: from stage 5's model, twice the text (Gutenberg shards 02 and 03 added; 01 stays the validation
#       text), plain-text LM on 1,024-token windows weighted up (co_encoder_lm.json) -> .train/co_encoder5
#   scripts/default_model/train.sh co_encoder_cont BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 7: from stage 6's model, continuation weighted up and passkey haystacks of up to 16,000 tokens
#       (8 windows: each step caps them at what its ratio fits) (co_encoder_cont.json) -> .train/co_encoder6
#   scripts/default_model/train.sh co_encoder_qa BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 8: from stage 7's model, QA weighted up, lr 1e-4 (co_encoder_qa.json) -> .train/co_encoder7
#   scripts/default_model/train.sh co_encoder_mix BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 9, the shipped model: from stage 6's, continuation and QA weighted up, passkey haystacks of up to
#       16,000 tokens, lr 2e-4 (co_encoder_mix.json) -> .train/co_encoder8
#   scripts/default_model/train.sh co_encoder_mix2 BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 10: from stage 9's model (the shipped folder), reconstruction weighted up to 1.0, the rest as stage 9
#       (co_encoder_mix2.json) -> .train/co_encoder9
#   scripts/default_model/train.sh co_encoder_mix3 BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 11a: from stage 10's model, the same recipe, micro-batches of 8 (co_encoder_mix3.json) ->
#       .train/co_encoder10
#   scripts/default_model/train.sh co_encoder_deep BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 11b: stage 11a with a tower of 6 layers instead of 3: from .train/co_encoder9-deep, which
#       grow_tower.py makes from stage 10's model (co_encoder_deep.json) -> .train/co_encoder11
#   scripts/default_model/train.sh co_encoder_attn BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 12a: stage 11a's recipe and 95 steps with pooling "attn": from .train/co_encoder9-attn, which
#       set_pooling.py makes from stage 10's model (co_encoder_attn.json) -> .train/co_encoder12
#   scripts/default_model/train.sh co_encoder_dyn BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 12b: the same with pooling "dynamic" (the seed's; one ratio, 4): from .train/co_encoder9-dyn
#       (co_encoder_dyn.json) -> .train/co_encoder13
#   scripts/default_model/train.sh co_encoder_dec10 BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 13: a decoder of 10 layers instead of 8, from .train/co_encoder9-dec10, which grow_decoder.py makes
#       from stage 10's model; QA weighted down, plain-text LM up, Gutenberg-00 added (co_encoder_dec10.json) ->
#       .train/co_encoder14
#   scripts/default_model/train.sh co_encoder_dec10_qa BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 14: stage 13's model with QA weighted back up to 1.0 (co_encoder_dec10_qa.json) -> .train/co_encoder15
#   scripts/default_model/train.sh co_encoder_distill | co_encoder_plain BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 15: from stage 10's model, stage 13's weights with distillation towards the full reading ("distill":
#       1.0; co_encoder_distill.json -> .train/co_encoder16) and its control without it (co_encoder_plain.json ->
#       .train/co_encoder17, not run)
#   scripts/default_model/train.sh co_encoder_distill_frozen BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 16: stage 15 with the decoder frozen (co_encoder_distill_frozen.json -> .train/co_encoder18)
#   scripts/default_model/train.sh co_encoder_lookup BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 17: co_encoder_plain.json plus objective lookup (co_encoder_lookup.json -> .train/co_encoder19)
#   scripts/default_model/train.sh co_encoder_lookup2 | co_encoder_cloze BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stages 18 and 19: from stage 10's model, the lookup drill on both readings (co_encoder_lookup2.json ->
#       .train/co_encoder20) and cloze questions in its place (co_encoder_cloze.json -> .train/co_encoder21)
#   scripts/default_model/train.sh co_encoder_chunk512 BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 20: stage 19's recipe and its 149 steps on chunks of 512 tokens instead of 128, from
#       .train/co_encoder9-c512, which set_chunk_size.py makes from stage 10's model (co_encoder_chunk512.json) ->
#       .train/co_encoder22
#   scripts/default_model/train.sh co_encoder_v2 | co_encoder_v2_recon | co_encoder_v2_mix BUILD [SECONDS] [STOP_AFTER]
#       stages 22, 22b and 23, on stage 21's decoder (.train/decoder_all_more): a tower of its first 3 layers and a
#       fresh connector trained with it, stages 2-5's objectives in one run (co_encoder_v2.json ->
#       .train/co_encoder_v2); from it, stage 3's move: contexts of 256 tokens, reconstruction weighted above the
#       rest (co_encoder_v2_recon.json -> .train/co_encoder_v2b); then stage 10's recipe from there
#       (co_encoder_v2_mix.json -> .train/co_encoder_v2_mix)
#   scripts/default_model/train.sh co_encoder_dec10_cloze BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 24: stage 13's 10-layer decoder (.train/co_encoder9-dec10, grow_decoder.py) with QA at 0.7 and
#       stage 19's cloze drill on both readings (co_encoder_dec10_cloze.json -> .train/co_encoder24)
#   scripts/default_model/train.sh co_encoder_v3 BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 25: stage 22b's recipe (contexts of 256 tokens, reconstruction leading) straight from stage 21's
#       decoder with a fresh tower (its first 3 layers) and connector, stage 22 skipped; all five training shards
#       with the decoder at 0.3 of the rate (co_encoder_v3.json -> .train/co_encoder_v3)
#   scripts/default_model/train.sh co_encoder_v3_more | co_encoder_v3_mix BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 25b: stage 25 for 270 s more at half its rate (co_encoder_v3_more.json -> .train/co_encoder_v3b);
#       stage 26: stage 10's recipe (contexts of 128-512 tokens, ratios up to 16, long haystacks) from there, the
#       decoder still at 0.3 of the rate (co_encoder_v3_mix.json -> .train/co_encoder_v3_mix)
#
# NPROC=N (environment) trains data parallel on N GPUs (`coenc train --nproc N`): the config's grad_accum must be a
# multiple of N; the global batch and so the run are the same on any N (stage 7's config: batch 128 as 8 micro-batches of 16 a objective, which fit an 80 GB H100 with 16,000-token haystacks).
#
# The trainer reads the compressed shards (.train/pretrain/*.txt.xz) and .train/qa-train.jsonl.xz directly.
# BUILD is the build folder holding coenc (scripts/gpu_build.sh). Outputs: .train/decoder, .train/co_encoder,
# .train/co_encoder2 .. co_encoder22 (stages 3-20; the table in stages.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/default_model/stages.sh  # stage_dir, resumable_stage, resumable_stages
# Contexts, haystacks and LM windows change length every step: expandable segments keep the CUDA allocator's cache
# from fragmenting (stage 22 at batch 32 ran out of an H100's 80 GB with 15 GB reserved but unused; as 2
# micro-batches of 16 with them it peaked at 37 GB).
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
stage=${1:?usage: train.sh decoder|co_encoder_more|STAGE BUILD [SECONDS] [STOP_AFTER_SECONDS], STAGE one of: $(resumable_stages)}
coenc=${2:-build}/coenc
budget=${3:-}
stop_after=${4:-}

args=()
[ "${NPROC:-1}" -gt 1 ] && args+=(--nproc "$NPROC")
[ -n "$budget" ] && args+=(--set "time_budget_s=$budget")
case "$stage" in
  decoder | decoder_all | decoder_all_more)
    "$coenc" train "scripts/default_model/$stage.json" "${args[@]}"
    ;;
  co_encoder_more)
    "$coenc" train scripts/default_model/co_encoder_more.json
    ;;
  *)
    if ! resumable_stage "$stage"; then
      echo "train.sh: unknown stage '$stage' (expected decoder, co_encoder_more or one of: $(resumable_stages))" >&2
      exit 2
    fi
    out=.train/$(stage_dir "$stage")
    [ -d "$out/checkpoint" ] && args+=(--set resume=true)
    if [ -n "$stop_after" ]; then
      # SIGINT at the deadline: the trainer saves its checkpoint and exits with status 130.
      status=0
      timeout -s INT "$stop_after" "$coenc" train "scripts/default_model/$stage.json" "${args[@]}" || status=$?
      [ "$status" -eq 0 ] || [ "$status" -eq 130 ] || [ "$status" -eq 124 ] || exit "$status"
    else
      "$coenc" train "scripts/default_model/$stage.json" "${args[@]}"
    fi
    ;;
esac
