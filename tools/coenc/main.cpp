// coenc: one binary, one subcommand per job. See `coenc --help`.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <malloc.h>

#include <c10/util/Exception.h>

#include <nlohmann/json.hpp>

#include "coenc/error.h"
#include "commands.h"

namespace {

// libtorch errors carry a multi-line backtrace; the user gets the first line.
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

constexpr int kExitUsage = 2, kExitOutOfMemory = 8;

// One line on stderr: "coenc: error: MESSAGE", or with --json on the command line the envelope
// {"error": {"message": ..., "type": ...}} that scripts parse.
int report(bool json, const std::string& message, const std::string& type, int status) {
  if (json)
    std::cerr << nlohmann::json{{"error", {{"message", message}, {"type", type}}}}.dump() << "\n";
  else
    std::cerr << "coenc: error: " << message << "\n";
  return status;
}

// The CPU path allocates and frees tensors of tens to hundreds of megabytes every forward. By default glibc gives
// each one back to the kernel when it is freed (munmap, heap trimming) and the next one faults its pages in again:
// on the 2-core machine a third of a compression's time went to the kernel. Freed memory stays in the heap
// instead (compressing a 37 k-token library: 8.6-9.0 s -> 5.9-6.4 s, docs/benchmarks.md "Threads and dtype").
// A user's own GLIBC_TUNABLES for malloc wins.
void keep_freed_memory() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables && std::strstr(tunables, "glibc.malloc.")) return;
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

}  // namespace

int main(int argc, char** argv) {
  keep_freed_memory();
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
  add(coenc::cli::setup_chat);
  add(coenc::cli::setup_eval);
  add(coenc::cli::setup_serve);
  add(coenc::cli::setup_bench);
  add(coenc::cli::setup_inspect);
  add(coenc::cli::setup_convert);
  add(coenc::cli::setup_tokenize);
  add(coenc::cli::setup_tokenizer);
  add(coenc::cli::setup_train);

  bool json = false;
  for (int i = 1; i < argc; ++i) json = json || std::strcmp(argv[i], "--json") == 0;
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version
  } catch (const CLI::ParseError& e) {
    const CLI::App* sub = nullptr;
    for (auto& [s, fn] : commands)
      if (s->parsed()) sub = s;
    return report(json,
                  first_line(e.what()) + " (see coenc " + (sub ? sub->get_name() + " " : std::string()) + "--help)",
                  "usage", kExitUsage);
  }
  try {
    for (auto& [sub, fn] : commands) {
      if (sub->parsed()) return fn();
    }
    return 1;
  } catch (const coenc::Error& e) {
    return report(json, e.what(), coenc::error_code_name(e.code()), coenc::exit_status(e.code()));
  } catch (const std::bad_alloc&) {
    return report(json, "out of memory", "out_of_memory", kExitOutOfMemory);
  } catch (const c10::Error& e) {
    const std::string message = first_line(e.what_without_backtrace());
    if (message.find("out of memory") != std::string::npos || message.find("Out of memory") != std::string::npos ||
        message.find("not enough memory") != std::string::npos)
      return report(json, message, "out_of_memory", kExitOutOfMemory);
    return report(json, message, "internal", 1);
  } catch (const std::exception& e) {
    return report(json, first_line(e.what()), "internal", 1);
  }
}
