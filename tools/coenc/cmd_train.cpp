// coenc train: run a training described by a JSON config.
#include <cstdlib>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "coenc/atomic_file.h"
#include "coenc/error.h"
#include "coenc/train.h"
#include "commands.h"

namespace coenc::cli {

namespace {

struct TrainArgs {
  std::string config;
  std::vector<std::string> overrides;  // key=value, JSON values (strings may be bare)
  bool quiet = false;
  int nproc = 1;
};

// The config file with the --set overrides applied.
nlohmann::json read_config(const TrainArgs& a) {
  nlohmann::json j = read_json_file(a.config, "training config");
  COENC_CHECK(j.is_object(), "{}: expected a JSON object", a.config);
  for (const auto& kv : a.overrides) {
    const auto eq = kv.find('=');
    COENC_CHECK(eq != std::string::npos && eq > 0, "--set \"{}\": expected key=value", kv);
    const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
    try {
      j[key] = nlohmann::json::parse(value);
    } catch (const nlohmann::json::exception&) {
      j[key] = value;  // a bare string
    }
  }
  if (a.quiet) j["progress"] = false;
  return j;
}

int run_train(const TrainArgs& a) {
  nlohmann::json j = read_config(a);
  TrainConfig config = TrainConfig::from_json(j, a.config);
  if (a.nproc > 1) {
    // Checked here, once, rather than by every process.
    COENC_CHECK(config.co_encoder_mode(), "--nproc: data parallel training is for Co-Encoder runs (co_encoder or "
                "co_encoder_config)");
    COENC_CHECK(config.grad_accum % a.nproc == 0,
                "grad_accum ({}) must be a multiple of the number of processes ({}): each process takes grad_accum / "
                "{} of a step's micro-batches, so that the step is the one-process step of the same global batch",
                config.grad_accum, a.nproc, a.nproc);
    return launch_data_parallel(a.nproc, command_line_without_nproc());
  }
  TrainResult r = train(config);
  nlohmann::json summary = {{"out", config.out},
                            {"initial_eval_loss", r.initial_eval_loss},
                            {"final_eval_loss", r.final_eval_loss},
                            {"final_train_loss", r.final_train_loss},
                            {"tokens", r.tokens_seen},
                            {"seconds", r.seconds}};
  if (config.co_encoder_mode()) {
    summary["steps"] = r.steps_done;
    summary["stopped"] = r.stopped;
    summary["interrupted"] = r.interrupted;
    if (!r.final_eval.is_null()) summary["final_eval"] = r.final_eval;
  }
  const char* rank = std::getenv("RANK");
  if (rank && std::string(rank) != "0") return r.interrupted ? 130 : 0;  // the first process reports
  std::cout << summary.dump() << "\n";
  if (r.stopped) {
    std::cerr << "coenc train: stopped at step " << r.steps_done << "; checkpoint in " << config.out
              << "/checkpoint (continue with --set resume=true)\n";
    if (r.interrupted) return 130;  // the conventional status of a run ended by SIGINT
  }
  return 0;
}

}  // namespace

CommandFn setup_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  auto* cmd = app.add_subcommand("train", "Train a decoder (next-token LM) or a Co-Encoder from a JSON config.");
  cmd->footer(
      "The config is a JSON object; paths in it are relative to the config file. Fields (defaults in "
      "brackets):\n"
      "  objective [\"lm\"], init_from (model dir) | model_config (config.json object), tokenizer, "
      "train_files,\n"
      "  out, seq_len [256], batch_size [32], grad_accum [1], steps [1000], lr [1e-3], min_lr_ratio [0.1],\n"
      "  warmup_steps [100], weight_decay [0.1], beta1 [0.9], beta2 [0.95], grad_clip [1.0], eval_every "
      "[200],\n"
      "  eval_batches [8], eval_fraction [0.01], seed [0], device [\"cpu\"], autocast [\"none\"] | "
      "\"bf16\",\n"
      "  time_budget_s [0]: fit the run into that many seconds of training (steps becomes an upper bound; "
      "the\n"
      "  length is planned from the measured speed, docs/co_encoder.md \"Time budgets\").\n"
      "Writes OUT/ as a Hugging Face model directory (bf16 weights, config.json, tokenizer files) and\n"
      "OUT/metrics.jsonl; prints a JSON summary.\n\n"
      "Co-Encoder training (docs/co_encoder.md, \"Training\"): give co_encoder (checkpoint dir) or\n"
      "  co_encoder_config (config.json object; tower_from / decoder_from model dirs, else random, init_std "
      "[0.02]),\n"
      "  tower_layers [all] (keep the first N layers of tower_from),\n"
      "  objectives {\"reconstruction\": w, \"continuation\": w, \"qa\": w, \"qa_text\": w, \"lm\": w,\n"
      "  \"passkey\": w, \"lookup\": w, \"lookup_text\": w, \"cloze\": w, \"cloze_text\": w} (passkey: find \"The\n"
      "  secret number is NNNNN.\" in a haystack of train_files text; lookup: say the ~8 tokens of words that\n"
      "  follow a quoted cue of the context; cloze: answer a sentence of the context asked with \"what\" /\n"
      "  \"what year\" / \"how many\" where a name or number stood; *_text: the same with the context read as\n"
      "  text),\n"
      "  train_files (text) and/or qa_files (JSONL {context, question, answers}), tokenizer | "
      "context_tokenizer +\n"
      "  text_tokenizer [the checkpoint's],\n"
      "  train {\"connector\": true, \"tower\": \"frozen\"|\"full\"|\"lora\", \"decoder\": same},\n"
      "  lora {\"rank\": 8, \"alpha\": 16, \"targets\": [q_proj, ... down_proj]} (merged into the weights "
      "when saved),\n"
      "  autocast [\"none\"] | \"bf16\" | \"f16\" (mixed precision; f16 on CUDA only), "
      "activation_checkpointing [false],\n"
      "  embed_tower / embed_decoder [false] (a frozen part loaded from a directory is referenced by a "
      "relative\n"
      "  path instead of copied), save_dtype [\"f32\"] | \"bf16\" (the written checkpoint's tensors),\n"
      "  max_shard_mb [0] (> 0: weights written as Hugging Face shards of at most that many MB; both trainers),\n"
      "  context_tokens [chunk_size], min_context_tokens [0] (> 0: lengths drawn from [min, "
      "context_tokens]),\n"
      "  compression_ratios [none] (e.g. [4, 8]: one connector trained at several ratios), "
      "continuation_tokens [64],\n"
      "  max_context_tokens [4 x chunk_size], passkey_tokens [context_tokens] (the longest passkey haystack),\n"
      "  lm_tokens [continuation_tokens] (the plain-text window of objective lm),\n"
      "  size_loss_weight [0.1], distill [0] (> 0: the compressed reading's next-token distributions pulled\n"
      "  towards the full reading's, KL weighted so, on continuation and qa examples),\n"
      "  log_every [eval_every], save_every [0], resume [false], stop_after [0].\n"
      "  batch_size counts examples of each objective. Writes OUT/ as a Co-Encoder checkpoint (+ "
      "context_tokenizer/,\n"
      "  text_tokenizer/), OUT/metrics.jsonl, OUT/loss_curve.svg and OUT/checkpoint/ (atomic; --set "
      "resume=true\n"
      "  continues exactly). Ctrl-C finishes the step, saves the checkpoint and exits with status 130.\n\n"
      "Examples:\n"
      "  coenc train --config models/default/train.json --set device=cuda      # the embedded default "
      "decoder\n"
      "  coenc train scripts/default_model/decoder.json --set time_budget_s=300   # 5 minutes of "
      "training\n"
      "  coenc train run.json --set resume=true --nproc 2                    # continue a run on two "
      "GPUs");
  // -c is --ctx-size in every command that generates (llama.cpp's convention): the config is positional here.
  cmd->add_option("config,--config", a->config, "training config (JSON)")->required();
  cmd->add_option("--set", a->overrides, "override a config field, e.g. --set steps=100 (repeatable)");
  cmd->add_flag("-q,--quiet", a->quiet, "no progress bars");
  cmd->add_option("--nproc", a->nproc,
                  "data parallel: run N processes (one per GPU: cuda:0..N-1; or N on the CPU) that share each step; "
                  "grad_accum must be a multiple of N. torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, ...) work "
                  "too")
      ->check(CLI::Range(1, 64));
  return [a] { return run_train(*a); };
}

}  // namespace coenc::cli
