# Sourced by train.sh and gpu_call.sh: the output folder (under .train/) of each resumable stage.
stage_dir() {
  case "$1" in
    co_encoder_long) echo co_encoder3 ;;
    co_encoder_final) echo co_encoder4 ;;
    co_encoder_lm) echo co_encoder5 ;;
    co_encoder_cont) echo co_encoder6 ;;
    co_encoder_qa) echo co_encoder7 ;;
    co_encoder_mix) echo co_encoder8 ;;
    co_encoder_mix2) echo co_encoder9 ;;
    co_encoder_mix3) echo co_encoder10 ;;
    co_encoder_deep) echo co_encoder11 ;;
    co_encoder_attn) echo co_encoder12 ;;
    co_encoder_dyn) echo co_encoder13 ;;
    co_encoder_dec10) echo co_encoder14 ;;
    co_encoder_dec10_qa) echo co_encoder15 ;;
    *) echo "$1" ;;
  esac
}
