// coenc: one binary, one subcommand per job. See `coenc --help`.
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include <c10/util/Exception.h>

#include "coenc/error.h"
#include "commands.h"

namespace {

// libtorch errors carry a multi-line backtrace; the user gets the first line.
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "coenc - Co-Encoder: compress long documents into a few vectors that a decoder LLM reads in place of the "
      "text.\nRun `coenc <command> --help` for a command's options."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "coenc 0.1.0");

  std::vector<std::pair<CLI::App*, coenc::cli::CommandFn>> commands;
  auto add = [&](coenc::cli::CommandFn (*setup)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    coenc::cli::CommandFn fn = setup(app);
    commands.emplace_back(app.get_subcommands({}).at(before), std::move(fn));
  };
  add(coenc::cli::setup_generate);
  add(coenc::cli::setup_compress);
  add(coenc::cli::setup_ask);
  add(coenc::cli::setup_eval);
  add(coenc::cli::setup_bench);
  add(coenc::cli::setup_inspect);
  add(coenc::cli::setup_convert);
  add(coenc::cli::setup_tokenize);
  add(coenc::cli::setup_tokenizer);
  add(coenc::cli::setup_train);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, fn] : commands) {
      if (sub->parsed()) return fn();
    }
    return 1;
  } catch (const coenc::Error& e) {
    std::cerr << "coenc: error: " << e.what() << "\n";
  } catch (const c10::Error& e) {
    std::cerr << "coenc: error: " << first_line(e.what_without_backtrace()) << "\n";
  } catch (const std::exception& e) {
    std::cerr << "coenc: error: " << first_line(e.what()) << "\n";
  }
  return 1;
}
