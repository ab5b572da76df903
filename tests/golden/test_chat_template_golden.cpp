// Chat templates rendered exactly as transformers' apply_chat_template renders them: the real chat_template
// texts of Qwen3, Qwen2.5, Llama-3, Llama-3.2, Mistral, Gemma-2/3, SmolLM2 and Phi-3/3.5/4, each with a set
// of conversations, replayed from tests/golden/chat_templates/fixtures.json
// (scripts/make_chat_template_fixtures.py; the fixture holds the template texts, so this test needs no
// downloaded data).
#include <gtest/gtest.h>

#include <ctime>
#include <fstream>

#include <nlohmann/json.hpp>

#include "coenc/error.h"
#include "coenc/tokenizer.h"
#include "test_util.h"
#include "tokenizer/jinja.h"

namespace coenc::test {
namespace {

nlohmann::ordered_json load_fixture() {
  std::ifstream in(test_dir() / "golden" / "chat_templates" / "fixtures.json");
  return nlohmann::ordered_json::parse(in);
}

// Where `actual` departs from `expected`, with newlines shown as \n (gtest prints both texts in full).
std::string difference(const std::string& expected, const std::string& actual) {
  size_t at = 0;
  while (at < expected.size() && at < actual.size() && expected[at] == actual[at]) ++at;
  auto excerpt = [&](const std::string& s) {
    std::string out;
    for (char c : s.substr(at > 30 ? at - 30 : 0, 60))
      out += c == '\n' ? std::string("\\n") : std::string(1, c);
    return out;
  };
  return format("first difference at byte {}:\n  expected ...{}...\n  actual   ...{}...", at,
                excerpt(expected), excerpt(actual));
}

// strftime_now pinned to the fixture's date, as the fixture maker pins it.
std::function<std::string(const std::string&)> fixed_strftime(const std::string& iso) {
  std::tm tm{};
  EXPECT_EQ(std::sscanf(iso.c_str(), "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                        &tm.tm_min, &tm.tm_sec),
            6);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return [tm](const std::string& format) {
    char buf[256];
    return std::string(buf, std::strftime(buf, sizeof buf, format.c_str(), &tm));
  };
}

class ChatTemplateGolden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { fixture_ = new nlohmann::ordered_json(load_fixture()); }
  static void TearDownTestSuite() {
    delete fixture_;
    fixture_ = nullptr;
  }
  static const nlohmann::ordered_json* fixture_;
};
const nlohmann::ordered_json* ChatTemplateGolden::fixture_ = nullptr;

TEST_F(ChatTemplateGolden, CoversTheFamilies) {
  std::vector<std::string> names;
  for (const auto& t : (*fixture_)["templates"]) names.push_back(t["name"]);
  for (const char* family : {"qwen3", "qwen2_5", "llama3", "llama3_2", "mistral_7b_instruct", "mistral_nemo",
                             "gemma2", "gemma3", "smollm2", "phi3", "phi3_5", "phi4", "phi4_mini"})
    EXPECT_NE(std::find(names.begin(), names.end(), family), names.end()) << family;
}

// Every case renders to the exact text transformers gave (or raises the same raise_exception message),
// through the public API for plain conversations and through the engine for the cases that pass tools.
TEST_F(ChatTemplateGolden, RendersAsTransformers) {
  const auto strftime_now = fixed_strftime((*fixture_)["strftime_now"]);
  int checked = 0;
  for (const auto& t : (*fixture_)["templates"]) {
    const std::string name = t["name"];
    const ChatTemplate chat = ChatTemplate::jinja(t["chat_template"].get<std::string>(), name);
    const jinja::Template engine(t["chat_template"].get<std::string>(), name);
    for (const auto& c : t["cases"]) {
      SCOPED_TRACE(name + " / " + c["name"].get<std::string>());
      std::string actual;
      try {
        if (c.contains("tools")) {
          jinja::Object vars = {{"messages", jinja::from_json(c["messages"])},
                                {"tools", jinja::from_json(c["tools"])},
                                {"documents", nullptr},
                                {"add_generation_prompt", c["add_generation_prompt"].get<bool>()}};
          for (const char* special : {"bos_token", "eos_token"})
            if (!t[special].is_null()) vars.emplace_back(special, t[special].get<std::string>());
          jinja::RenderOptions ro;
          ro.strftime_now = strftime_now;
          actual = engine.render(vars, ro);
        } else {
          std::vector<ChatMessage> messages;
          for (const auto& m : c["messages"]) messages.push_back({m["role"], m["content"]});
          ChatRenderOptions o;
          o.add_generation_prompt = c["add_generation_prompt"];
          if (!t["bos_token"].is_null()) o.bos_token = t["bos_token"];
          if (!t["eos_token"].is_null()) o.eos_token = t["eos_token"];
          if (c.contains("kwargs") && c["kwargs"].contains("enable_thinking"))
            o.enable_thinking = c["kwargs"]["enable_thinking"].get<bool>();
          o.strftime_now = strftime_now;
          actual = render_chat(messages, chat, o);
        }
      } catch (const Error& e) {
        ASSERT_TRUE(c.contains("expected_error")) << "unexpected error: " << e.what();
        EXPECT_NE(std::string(e.what()).find(c["expected_error"].get<std::string>()), std::string::npos)
            << e.what();
        ++checked;
        continue;
      }
      ASSERT_FALSE(c.contains("expected_error")) << "expected the error " << c["expected_error"] << ", got\n"
                                                 << actual;
      const std::string expected = c["expected"];
      EXPECT_EQ(actual, expected) << difference(expected, actual);
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

// The Qwen2.5 template's default system prompt and Qwen3's thinking switch, spelled out (the fixture's own
// texts): what the family detection that came before got wrong.
TEST_F(ChatTemplateGolden, QwenDefaultSystemPromptAndThinking) {
  auto find = [&](const std::string& name) {
    for (const auto& t : (*fixture_)["templates"])
      if (t["name"] == name) return ChatTemplate::jinja(t["chat_template"].get<std::string>(), name);
    ADD_FAILURE() << name << " is not in the fixture";
    return ChatTemplate(ChatFormat::ChatML);
  };
  EXPECT_EQ(
      render_chat({{"user", "Hi"}}, find("qwen2_5"), {}),
      "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  ChatRenderOptions off;
  off.enable_thinking = false;
  EXPECT_EQ(render_chat({{"user", "Hi"}}, find("qwen3"), off),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  // The same switch as a keyword argument (--chat-template-kwargs, the server's chat_template_kwargs).
  ChatRenderOptions kwargs;
  kwargs.template_kwargs = {{"enable_thinking", false}};
  EXPECT_EQ(render_chat({{"user", "Hi"}}, find("qwen3"), kwargs), render_chat({{"user", "Hi"}}, find("qwen3"), off));
  kwargs.template_kwargs = {{"enable_thinking", true}};
  EXPECT_EQ(render_chat({{"user", "Hi"}}, find("qwen3"), kwargs), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // The reasoning of an earlier turn is dropped; that of the last turn is kept.
  EXPECT_EQ(render_chat({{"user", "Hi"}, {"assistant", "<think>\nhm\n</think>\n\nHello."}, {"user", "Bye"}},
                        find("qwen3"), {}),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|"
            "im_end|>\n"
            "<|im_start|>assistant\n");
}

}  // namespace
}  // namespace coenc::test
