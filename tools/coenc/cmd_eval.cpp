// coenc eval: compression quality side by side (no context / full / compressed at each ratio / truncated),
// with its cost. docs/eval.md.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "cli_util.h"
#include "coenc/atomic_file.h"
#include "coenc/error.h"
#include "coenc/eval.h"
#include "commands.h"

namespace coenc::cli {

namespace {

struct EvalArgs {
  std::string model;
  std::string ratios;  // "4,8"
  EvalOptions options;
  bool json = false;
  bool quiet = false;
  DeviceArgs device;
};

std::string cell(const nlohmann::json& m, const std::string& key, bool percent) {
  if (!m.contains(key) || m[key].is_null()) return "";
  const double scale = percent ? 100 : 1;
  char buf[48];
  std::snprintf(buf, sizeof buf, percent ? "%.1f" : "%.3f", scale * m[key].get<double>());
  std::string out = buf;
  const std::string error = key + "_stderr";
  if (m.contains(error) && m[error].is_number()) {
    std::snprintf(buf, sizeof buf, percent ? " ±%.1f" : " ±%.3f", scale * m[error].get<double>());
    out += buf;
  }
  return percent ? out + "%" : out;
}

// The result as a table: one row per condition, the task's metrics, then cost.
void print_table(const nlohmann::json& r) {
  std::vector<std::pair<const char*, bool>> metrics;  // name, shown as percent
  const std::string task = r["task"];
  if (task == "recon")
    metrics = {{"token_accuracy", true}, {"exact_accuracy", true}, {"bleu4", false}, {"nll", false}};
  if (task == "ppl") metrics = {{"nll", false}, {"ppl", false}};
  if (task == "qa" || task == "lookup" || task == "cloze") metrics = {{"accuracy", true}, {"em", true}, {"f1", true}};
  if (task == "needle") metrics = {{"accuracy", true}};
  std::printf("%s on %s: %lld items, seed %llu\n", task.c_str(), r["model"].get<std::string>().c_str(),
              static_cast<long long>(r["n"].get<int64_t>()),
              static_cast<unsigned long long>(r["seed"].get<uint64_t>()));
  // Only the metrics some condition has (qa: accuracy for options, EM / F1 for answers).
  auto present = [&r](const std::pair<const char*, bool>& metric) {
    for (const auto& [name, m] : r["conditions"].items())
      if (m.contains(metric.first)) return true;
    return false;
  };
  metrics.erase(std::remove_if(metrics.begin(), metrics.end(), [&](const auto& m) { return !present(m); }),
                metrics.end());
  int width = 16;  // the condition column: as wide as the longest name (compressed@4+tail16)
  for (const auto& [name, m] : r["conditions"].items()) width = std::max(width, static_cast<int>(name.size()) + 1);
  std::printf("%-*s", width, "condition");
  for (auto& [name, pct] : metrics) std::printf(" %16s", name);
  std::printf(" %10s %12s %9s\n", "positions", "kv_bytes", "seconds");
  for (const auto& [name, m] : r["conditions"].items()) {
    std::printf("%-*s", width, name.c_str());
    for (auto& [metric, pct] : metrics) {
      const std::string v = cell(m, metric, pct);
      std::printf(" %*s", 16 + (v.find("±") != std::string::npos ? 1 : 0), v.c_str());  // ± is two bytes
    }
    std::printf(" %10.1f %12.0f %9.2f\n", m["positions"].get<double>(), m["kv_bytes"].get<double>(),
                m["seconds"].get<double>());
  }
  for (const auto& [key, v] : r.items())
    if (key.rfind("gain_retained@", 0) == 0 || key.rfind("retention@", 0) == 0 ||
        key.rfind("retention_accuracy@", 0) == 0)
      std::printf("%s: %s\n", key.c_str(),
                  v.is_null() ? "n/a (the full context gains nothing)" : cell(r, key, true).c_str());
  // where in the continuation the compressed context keeps the full one's gain (ppl)
  for (const auto& [key, a] : r.items())
    if (key.rfind("gain_retained_by_position@", 0) == 0) {
      std::printf("%s (target tokens):", key.c_str());
      for (const auto& e : a) {
        const std::string b = e["positions"].get<std::string>();
        if (e["gain_retained"].is_null())
          std::printf(" %s n/a", b.c_str());
        else
          std::printf(" %s %.0f%%", b.c_str(), 100 * e["gain_retained"].get<double>());
      }
      std::printf("\n");
    }
  // compressed minus full, paired by item: a difference within about two standard errors may be chance
  for (const auto& [key, d] : r.items())
    if (key.rfind("difference@", 0) == 0) {
      const char* reference = r["conditions"].contains("full") ? "full" : "truncated";
      std::printf("%s (compressed - %s, paired):", key.c_str(), reference);
      for (auto& [metric, pct] : metrics)
        if (d.contains(metric)) std::printf(" %s %s", metric, cell(d, metric, pct).c_str());
      std::printf("\n");
    }
}

int run_eval_command(EvalArgs& a) {
  if (!a.ratios.empty())
    for (TokenId r : parse_id_list(a.ratios, "--ratio")) a.options.ratios.push_back(r);
  a.options.progress = !a.quiet;
  // Data and configuration errors before the (slow) model load.
  CoEncoderConfig config = CoEncoderConfig::load(a.model);
  CoEncoderTokenizers tok = load_co_encoder_tokenizers(a.model, config);
  for (const auto& f : a.options.data)
    COENC_CHECK_CODE(std::filesystem::exists(f), NotFound, "--data {}: no such file", f);
  CoEncoder model = load_co_encoder(a.model, device_options(a.device));
  a.options.item_scores = !a.options.out.empty();
  nlohmann::json r = run_eval(*model, tok, a.options, std::filesystem::path(a.model).filename().string());
  if (!a.options.out.empty()) {
    std::filesystem::create_directories(a.options.out);
    // Every item's scores by condition, one JSON object a line: two checkpoints' files of the same --seed and
    // data pair item by item.
    std::string lines;
    for (const auto& row : r["items"]) lines += row.dump() + "\n";
    r.erase("items");
    write_file_atomic(std::filesystem::path(a.options.out) / (a.options.task + "-items.jsonl"), lines);
    write_file_atomic(std::filesystem::path(a.options.out) / (a.options.task + ".json"), r.dump(2) + "\n");
    if (a.options.task == "needle")
      write_file_atomic(std::filesystem::path(a.options.out) / "needle.svg", needle_heatmap_svg(r));
  }
  if (a.json)
    std::cout << r.dump() << "\n";
  else
    print_table(r);
  return 0;
}

}  // namespace

CommandFn setup_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand(
      "eval", "Measure compression quality side by side: no context, full context, compressed, truncated.");
  cmd->footer(
      "Every item runs under every condition with the same decoder: none (the question or target alone), "
      "full\n"
      "(the document as text), compressed@R (the document compressed at ratio R, [BOC] v [EOC]), and "
      "truncated\n"
      "(the text cut to the decoder's window) where the full text does not fit. Each condition reports its\n"
      "metrics and its cost: mean decoder positions, KV-cache bytes, seconds (tower included).\n\n"
      "Tasks:\n"
      "  recon   the decoder regenerates each chunk from its vectors: teacher-forced token accuracy, greedy\n"
      "          exact-token accuracy, BLEU-4 (none: the decoder guessing the chunk alone)\n"
      "  ppl     K context tokens then M target tokens per document: mean NLL per target token and "
      "perplexity;\n"
      "          gain_retained@R = (NLL_none - NLL_compressed) / (NLL_none - NLL_full); both also by the target\n"
      "          token's position (nll_by_position, gain_retained_by_position@R: 1, 2, 3-4, 5-8, ...)\n"
      "  qa      questions with options: accuracy of the most likely option (mean log-likelihood per "
      "token);\n"
      "          without: greedy answer, SQuAD-normalised EM and F1; retention@R = score_compressed / "
      "score_full\n"
      "          (F1 where any question is open, else accuracy; a mix of both also gives "
      "retention_accuracy@R)\n"
      "  lookup  questions made from text documents, as training's objective lookup makes them: a window of\n"
      "          --context-tokens tokens is the context, 'What follows \"CUE\" in the text?' quotes about 8 of its\n"
      "          tokens, the words after them (about 8 tokens) are the answer; scored as qa (EM, F1, retention@R)\n"
      "  cloze   questions in SQuAD's form made from text documents, as training's objective cloze makes them: a\n"
      "          window of --context-tokens tokens is the context, one of its sentences asked with 'what' / 'what\n"
      "          year' / 'how many' where a name or number stood; that name or number is the answer; scored as qa\n"
      "  needle  'The secret number is NNNNN.' at depths 0-100% of filler text 0.5-8 windows long: "
      "retrieval\n"
      "          accuracy per cell; --out DIR writes needle.svg (depth x length heatmap per condition)\n\n"
      "Data (--data, repeatable; any may end in .xz): .txt documents separated by '\\n\\n<|doc|>\\n' or "
      ".jsonl with\n"
      "\"text\" (recon, ppl, lookup, cloze, needle filler); QA .jsonl with \"context\", \"question\", \"answers\", "
      "optional\n"
      "\"options\" and \"meta.answer_index\" (qa). --json prints one object: {\"task\", \"model\", \"n\", "
      "\"ratios\",\n"
      "\"conditions\": {\"none\": {...}, \"full\": {...}, \"compressed@4\": {...}, \"truncated\": {...}},\n"
      "\"gain_retained@4\" | \"retention@4\", ...} with metrics by name (token_accuracy, exact_accuracy, "
      "bleu4, nll,\n"
      "ppl, accuracy, em, f1, positions, kv_bytes, seconds; needle: accuracy and cells). Every metric scored "
      "per item\n"
      "has its standard error over the items beside it (f1_stderr, ...; shown as +-); \"difference@R\" (ppl, "
      "qa, lookup, cloze) is\n"
      "compressed@R minus full, paired by item, with its own standard errors: the figure to compare "
      "designs by,\n"
      "much tighter than either score's error. The same --seed gives the same items and numbers. Choose "
      "designs on\n"
      "validation splits, never on test (docs/eval.md).\n\n"
      "Examples:\n"
      "  coenc eval -m CKPT --task ppl --data corpus/eval/brown.jsonl.xz --ratio 4,8 --limit 100\n"
      "  coenc eval -m CKPT --task qa --data squad-val.jsonl --json > qa.json\n"
      "  coenc eval -m CKPT --task lookup --data gutenberg-01-part-full.txt.xz --ratio 4,8 --limit 200\n"
      "  coenc eval -m CKPT --task cloze --data gutenberg-01-part-full.txt.xz --ratio 4,8 --limit 300\n"
      "  coenc eval -m CKPT --task needle --data corpus/eval/gutenberg_heldout.jsonl.xz --out results/");
  cmd->add_option("--model,-m", a->model, "Co-Encoder checkpoint directory")->required();
  cmd->add_option("--task", a->options.task, "recon, ppl, qa, lookup, cloze or needle")
      ->required()
      ->check(CLI::IsMember({"recon", "ppl", "qa", "lookup", "cloze", "needle"}));
  cmd->add_option("--data", a->options.data, "data file (repeatable; .txt, .jsonl, optionally .xz)")
      ->required();
  cmd->add_option("--ratio", a->ratios,
                  "compression ratios to evaluate, comma-separated (default: the checkpoint's; mean and attn "
                  "pooling take any)");
  cmd->add_option(
      "--limit", a->options.limit,
      "items to evaluate: chunks (recon, default 200), documents (ppl, 200), questions (qa, 500; lookup, "
      "cloze, 300), trials per cell (needle, 2)");
  cmd->add_option("--seed", a->options.seed,
                  "sampling seed of items, windows and needle numbers (default 0)");
  cmd->add_option("--context-tokens", a->options.context_tokens,
                  "ppl: K context tokens; lookup, cloze: the window a question asks about (default 512)");
  cmd->add_option("--target-tokens", a->options.target_tokens, "ppl: M target tokens scored (default 128)");
  cmd->add_option("--raw-tail", a->options.raw_tail,
                  "ppl: also compressed@R+tailN, the context's last N tokens after [EOC] as text and the rest "
                  "compressed (a design probe: how much of the lost gain the words right before the target hold)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--out", a->options.out,
                  "folder for TASK.json, TASK-items.jsonl (every item's scores by condition) and needle.svg");
  cmd->add_flag("--json", a->json, "print one JSON object instead of the table");
  cmd->add_flag("--quiet,-q", a->quiet, "no progress bar");
  add_device_options(*cmd, a->device);
  return [a] { return run_eval_command(*a); };
}

}  // namespace coenc::cli
