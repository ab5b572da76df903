#include "test_util.h"

#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

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

void expect_one_line_error(const RunResult& r, const std::string& needle) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("coenc: error: ", 0), 0u) << r.err;
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
