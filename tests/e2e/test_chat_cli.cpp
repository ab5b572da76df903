// coenc chat, run as a user runs it: under a pseudo-terminal (prompts, echo, Ctrl-C, Ctrl-D) and in a pipe, on
// the shipped default Co-Encoder and its sample document.
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"

namespace coenc::test {
namespace {

namespace fs = std::filesystem;

fs::path root() { return test_dir().parent_path(); }
std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

// coenc running on the slave side of a pseudo-terminal: what a user at a terminal sees and types.
class PtyProcess {
 public:
  explicit PtyProcess(const std::vector<std::string>& args) {
    pid_ = forkpty(&master_, nullptr, nullptr, nullptr);
    if (pid_ < 0) error_ = std::strerror(errno);
    if (pid_ == 0) {
      setenv("TERM", "dumb", 1);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(COENC_BINARY, argv.data());
      _exit(127);
    }
  }
  ~PtyProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0) close(master_);
  }
  bool started() const { return pid_ > 0; }
  const std::string& error() const { return error_; }

  // Reads until everything read since the last call ends with `suffix` (or `seconds` pass): returns that text.
  std::string read_until(const std::string& suffix, double seconds = 180) {
    std::string got;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (got.size() < suffix.size() || got.compare(got.size() - suffix.size(), suffix.size(), suffix) != 0) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{master_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[4096];
      const ssize_t n = read(master_, buf, sizeof buf);
      if (n <= 0) break;  // the child closed the terminal (EIO)
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }
  void type(const std::string& text) {
    ASSERT_EQ(write(master_, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  }
  // Waits for the child to end; its exit status, or -1 when it did not end in time or ended by a signal.
  int wait_exit(double seconds = 60) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      read_until("\x01", 0.2);  // drain what it prints on the way out
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
    }
    return -1;
  }

 private:
  int master_ = -1;
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string error_;
};

std::vector<std::string> chat_args(std::vector<std::string> extra) {
  std::vector<std::string> args = {"coenc", "chat", "-m", (root() / "models" / "default-coenc").string(),
                                   "--doc", (root() / "examples" / "sample-document.txt").string(), "--temp", "0"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// The per-turn line: "[turn N: P prompt positions, F fed, R reused; ...]".
struct Turn {
  int n = 0, prompt = 0, fed = 0, reused = 0;
  bool found = false;
};
Turn last_turn(const std::string& text) {
  Turn t;
  static const std::regex re(R"(\[turn (\d+): (\d+) prompt positions, (\d+) fed, (\d+) reused)");
  for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it)
    t = {std::stoi((*it)[1]), std::stoi((*it)[2]), std::stoi((*it)[3]), std::stoi((*it)[4]), true};
  return t;
}

}  // namespace

// At a terminal: a prompt, the answer streamed (the same as `coenc ask` gives for the first question), a
// follow-up that reuses the cache of the document instead of feeding its 350 vectors again, /docs, Ctrl-D.
TEST(Chat, AnswersAtATerminalAndReusesTheDocumentsCache) {
  const RunResult ask = run_coenc("ask -q -m " + q(root() / "models" / "default-coenc") + " --doc " +
                                  q(root() / "examples" / "sample-document.txt") +
                                  " --temp 0 -n 12 --json 'What is the secret number?'");
  ASSERT_EQ(ask.exit_code, 0) << ask.err;
  const std::string expected = nlohmann::json::parse(ask.out)["text"];
  ASSERT_FALSE(expected.empty());

  PtyProcess chat(chat_args({"-n", "12"}));
  if (!chat.started()) GTEST_SKIP() << "no pseudo-terminal here (forkpty: " << chat.error() << ")";
  const std::string greeting = chat.read_until("> ");
  ASSERT_NE(greeting.find("1 document(s) compressed"), std::string::npos) << greeting;

  chat.type("What is the secret number?\n");
  const std::string first = chat.read_until("\n> ");
  EXPECT_NE(first.find("What is the secret number?\r\n"), std::string::npos) << first;  // the terminal's echo
  EXPECT_NE(first.find(expected + "\r\n"), std::string::npos) << "expected `" << expected << "` in: " << first;
  const Turn t1 = last_turn(first);
  ASSERT_TRUE(t1.found) << first;
  EXPECT_EQ(t1.n, 1);
  EXPECT_EQ(t1.reused, 0);
  EXPECT_EQ(t1.fed, t1.prompt);
  EXPECT_EQ(t1.prompt, 358);  // [BOC] 350 vectors [EOC] and the question: ask's prompt

  chat.type("/docs\n");
  const std::string docs = chat.read_until("\n> ");
  EXPECT_NE(docs.find("sample-document.txt: 1398 tokens -> 350 vectors"), std::string::npos) << docs;

  chat.type("And what is the secret number again?\n");
  const std::string second = chat.read_until("\n> ");
  const Turn t2 = last_turn(second);
  ASSERT_TRUE(t2.found) << second;
  EXPECT_EQ(t2.n, 2);
  EXPECT_GT(t2.prompt, t1.prompt);               // the history is in the prompt ...
  EXPECT_GE(t2.reused, 352);                     // ... and the document's block came from the cache
  EXPECT_EQ(t2.fed + t2.reused, t2.prompt);
  EXPECT_LT(t2.fed, 40);

  chat.type("/reset\n");
  EXPECT_NE(chat.read_until("\n> ").find("conversation forgotten"), std::string::npos);
  chat.type("\x04");  // Ctrl-D at an empty line: end of input
  EXPECT_EQ(chat.wait_exit(), 0);
}

// Ctrl-C while an answer streams stops that answer and keeps the chat going; /quit leaves.
TEST(Chat, CtrlCStopsTheAnswerNotTheChat) {
  PtyProcess chat(chat_args({"-n", "4000", "--ignore-eos", "-c", "2048"}));
  if (!chat.started()) GTEST_SKIP() << "no pseudo-terminal here (forkpty: " << chat.error() << ")";
  chat.read_until("> ");
  chat.type("Tell the whole story.\n");
  const std::string echo = chat.read_until("Tell the whole story.\r\n", 60);
  ASSERT_NE(echo.find("Tell the whole story."), std::string::npos) << echo;
  chat.read_until("\x01", 3);  // let a few tokens stream
  chat.type("\x03");           // the terminal sends SIGINT
  const std::string stopped = chat.read_until("\n> ", 60);
  EXPECT_NE(stopped.find("(stopped)"), std::string::npos) << stopped;
  const Turn t = last_turn(stopped);
  ASSERT_TRUE(t.found) << stopped;
  chat.type("/quit\n");
  EXPECT_EQ(chat.wait_exit(), 0);
}

// In a pipe: no prompts, one answer per line; a window too small for the whole conversation drops the earliest
// exchanges and says so; one too small for the document is one error line before any question.
TEST(Chat, ReadsAPipeAndDropsTheEarliestExchangesToFit) {
  const std::string base = "chat -m " + q(root() / "models" / "default-coenc") + " --doc " +
                           q(root() / "examples" / "sample-document.txt") + " --temp 0 -n 12 ";
  const std::string questions =
      "What is the secret number?\nWhat is the secret number?\nWhat is the secret number?\n"
      "What is the secret number?\n/quit\nnot read\n";
  const RunResult r = run_coenc(base + "-c 400", questions);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind(" 73914\n", 0), 0u) << r.out;  // the first answer is ask's
  EXPECT_EQ(r.out.find("> "), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("[turn 4:"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("[turn 5:"), std::string::npos) << r.err;  // /quit ended it
  EXPECT_NE(r.err.find("earliest exchange(s) dropped to fit"), std::string::npos) << r.err;

  const RunResult small = run_coenc(base + "-q -c 300", questions);
  expect_one_line_error(small, "the compressed document (350 vectors) takes 352 positions, which leaves no room");
  EXPECT_EQ(small.exit_code, 6);

  expect_one_line_error(run_coenc(base + "-q --doc /nonexistent/file.txt", questions), "/nonexistent/file.txt");
}

}  // namespace coenc::test
