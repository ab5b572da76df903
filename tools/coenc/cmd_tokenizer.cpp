// coenc tokenizer train: learn a byte-level BPE tokenizer from text files.
#include <chrono>
#include <iostream>

#include <nlohmann/json.hpp>

#include "coenc/error.h"
#include "commands.h"
#include "coenc/bpe_trainer.h"

namespace coenc::cli {

namespace {

struct TrainArgs {
  tok::BpeTrainerOptions options;
  std::vector<std::string> inputs;
  std::string out;
  bool quiet = false;
};

int run_train(TrainArgs& a) {
  a.options.progress = !a.quiet;
  auto t0 = std::chrono::steady_clock::now();
  tok::BpeTrainer trainer(a.options);
  for (const auto& path : a.inputs) trainer.add_file(path);
  trainer.train();
  trainer.save(a.out);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto& st = trainer.stats();
  nlohmann::json report = {{"out", a.out},
                           {"vocab_size", trainer.vocab().size()},
                           {"merges", st.merges},
                           {"bytes", st.bytes},
                           {"words", st.words},
                           {"distinct_words", st.distinct_words},
                           {"pruned_words", st.pruned_words},
                           {"seconds", s}};
  std::cout << report.dump() << "\n";
  return 0;
}

}  // namespace

CommandFn setup_tokenizer(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("tokenizer", "Tokenizer tools (see `coenc tokenizer train --help`).");
  cmd->require_subcommand(1);
  CLI::App* train = cmd->add_subcommand("train", "Learn a byte-level BPE tokenizer from plain-text files.");
  train->footer(
      "Writes DIR/tokenizer.json and DIR/tokenizer_config.json, which coenc and Hugging Face\n"
      "tokenizers load alike (Llama-3 style pre-tokenizer, ByteLevel decoder, the first special token\n"
      "as BOS/EOS/PAD, a ChatML chat template). Memory stays bounded by --max-words however large the\n"
      "input; progress goes to stderr.\n\n"
      "Examples:\n"
      "  coenc tokenizer train --vocab-size 16384 --input a.txt b.txt --out models/tok\n"
      "  xz -dc corpus.txt.xz | coenc tokenizer train --vocab-size 32000 --input - --out tok");
  train
      ->add_option("--vocab-size", args->options.vocab_size,
                   "total vocabulary size: special tokens + 256 byte symbols + learned merges")
      ->required()
      ->check(CLI::Range(1, 1 << 24));
  train
      ->add_option("--input", args->inputs,
                   "plain-text (UTF-8) files to learn from; '-' reads standard input")
      ->required();
  train->add_option("--out", args->out, "output directory (created if missing)")->required();
  train
      ->add_option("--special", args->options.special_tokens,
                   "special tokens, given the first ids; the first one is BOS/EOS/PAD")
      ->capture_default_str();
  train
      ->add_option("--min-frequency", args->options.min_frequency, "stop merging when the best pair is rarer")
      ->capture_default_str();
  train
      ->add_option(
          "--max-words", args->options.max_words,
          "distinct words kept while counting (about 100 bytes of memory each); rarer ones are pruned")
      ->capture_default_str();
  train->add_flag("--quiet", args->quiet, "no progress bars");
  return [args, train] { return train->parsed() ? run_train(*args) : 1; };
}

}  // namespace coenc::cli
