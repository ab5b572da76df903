# Sourced by train.sh and gpu_call.sh: the one table of resumable stages (`coenc train` runs of
# scripts/default_model/STAGE.json that can stop at a deadline and resume) and the folder under .train/ each
# writes. Add a stage here and its config beside this file; train.sh and gpu_call.sh take it from here.
declare -A STAGE_DIRS=(
  [co_encoder]=co_encoder            # stage 2
  [co_encoder_long]=co_encoder3      # stage 4
  [co_encoder_final]=co_encoder4     # stage 5
  [co_encoder_lm]=co_encoder5        # stage 6
  [co_encoder_cont]=co_encoder6      # stage 7
  [co_encoder_qa]=co_encoder7        # stage 8
  [co_encoder_mix]=co_encoder8       # stage 9
  [co_encoder_mix2]=co_encoder9      # stage 10, shipped
  [co_encoder_mix3]=co_encoder10     # stage 11a
  [co_encoder_deep]=co_encoder11     # stage 11b
  [co_encoder_attn]=co_encoder12     # stage 12a
  [co_encoder_dyn]=co_encoder13      # stage 12b
  [co_encoder_dec10]=co_encoder14    # stage 13
  [co_encoder_dec10_qa]=co_encoder15 # stage 14
  [co_encoder_distill]=co_encoder16  # stage 15 (measured, not shipped)
  [co_encoder_plain]=co_encoder17    # stage 17's control: stage 15 without distillation
  [co_encoder_distill_frozen]=co_encoder18  # stage 16 (measured, not shipped): stage 15, decoder frozen
  [co_encoder_lookup]=co_encoder19   # stage 17 (measured, not shipped): co_encoder_plain + objective lookup
  [co_encoder_lookup2]=co_encoder20  # stage 18 (measured, not shipped): stage 17 + lookup_text, both readings
  [co_encoder_cloze]=co_encoder21    # stage 19 (measured, not shipped): stage 18 with cloze / cloze_text
  [co_encoder_chunk512]=co_encoder22 # stage 20: stage 19 on chunks of 512 (from .train/co_encoder9-c512)
  [co_encoder_v2]=co_encoder_v2      # stage 22: stages 2-5 in one, on stage 21's decoder (.train/decoder_all_more)
  [co_encoder_v2_recon]=co_encoder_v2b  # stage 22b: stage 3's move on stage 22 (contexts of 256, reconstruction up)
  [co_encoder_v2_mix]=co_encoder_v2_mix  # stage 23: stage 10's recipe from stage 22b
  [co_encoder_dec10_cloze]=co_encoder24  # stage 24: stage 13 (10-layer decoder) with QA 0.7 and stage 19's cloze
  [co_encoder_v3]=co_encoder_v3      # stage 25: stage 22b's recipe straight from stage 21's decoder (no stage 22)
  [co_encoder_v3_more]=co_encoder_v3b  # stage 25b: 601 more steps of stage 25 at half the rate
  [co_encoder_v3_mix]=co_encoder_v3_mix  # stage 26: stage 10's recipe from stage 25b, the decoder at 0.3
)

# The output folder's name of a stage (the stage's own name for the others: decoder, co_encoder_more).
stage_dir() { echo "${STAGE_DIRS[$1]:-$1}"; }
# Whether STAGE is a resumable stage.
resumable_stage() { [ -n "${1:-}" ] && [ -n "${STAGE_DIRS[$1]+set}" ]; }
# The resumable stages, in one line.
resumable_stages() { printf '%s\n' "${!STAGE_DIRS[@]}" | sort | tr '\n' ' '; }
