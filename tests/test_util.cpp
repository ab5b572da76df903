#include "test_util.h"

#include <fstream>
#include <sstream>
#include <sys/wait.h>

namespace coenc::test {

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void copy_tree(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::filesystem::create_directories(to);
  for (const auto& entry : std::filesystem::directory_iterator(from)) {
    const auto target = to / entry.path().filename();
    if (entry.is_directory()) copy_tree(entry.path(), target);
    else std::filesystem::copy_file(entry.path(), target);
  }
}

RunResult run_coenc(const std::string& args, const std::string& input) {
  TempDir tmp;
  write_file(tmp / "stdin", input);
  std::string cmd = std::string("'") + COENC_BINARY + "' " + args + " <'" + (tmp / "stdin").string() + "' >'" +
                    (tmp / "stdout").string() + "' 2>'" + (tmp / "stderr").string() + "'";
  int status = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(tmp / "stdout");
  r.err = read_file(tmp / "stderr");
  return r;
}

}  // namespace coenc::test
