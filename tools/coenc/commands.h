// The coenc subcommands. Each tools/coenc/cmd_<name>.cpp defines one setup function: it adds its subcommand
// (flags, help text) to `app` and returns the function that runs it, which returns the process exit code.
// Errors are thrown as coenc::Error and reported by main().
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace coenc::cli {

using CommandFn = std::function<int()>;

CommandFn setup_generate(CLI::App& app);
CommandFn setup_compress(CLI::App& app);
CommandFn setup_ask(CLI::App& app);
CommandFn setup_chat(CLI::App& app);
CommandFn setup_bench(CLI::App& app);
CommandFn setup_inspect(CLI::App& app);
CommandFn setup_tokenize(CLI::App& app);
CommandFn setup_tokenizer(CLI::App& app);
CommandFn setup_train(CLI::App& app);
CommandFn setup_eval(CLI::App& app);
CommandFn setup_convert(CLI::App& app);
CommandFn setup_serve(CLI::App& app);

}  // namespace coenc::cli
