// Every bad-input path of tokenizer loading and use ends in one coenc::Error that names the file and field.
#include <gtest/gtest.h>

#include "coenc/tokenizer.h"
#include "test_util.h"
#include "tokenizer_test_json.h"

namespace coenc::test {
namespace {

std::string load_error(const nlohmann::json& j) {
  TempDir dir;
  try {
    load_tokenizer_json(dir, j);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(TokenizerErrors, MissingPathsAreNotFound) {
  TempDir dir;
  EXPECT_COENC_ERROR(Tokenizer::load((dir / "nope").string()), "no such file or directory");
  EXPECT_COENC_ERROR(Tokenizer::load(dir.path().string()),
                     "holds neither tokenizer.json nor tokenizer.model");
  try {
    Tokenizer::load(dir.path().string());
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::NotFound);
  }
}

TEST(TokenizerErrors, MalformedAndTruncatedJson) {
  TempDir dir;
  write_file(dir / "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0");
  EXPECT_COENC_ERROR(Tokenizer::load(dir.path().string()),
                     "tokenizer.json: malformed JSON: ");
  std::string full = tiny_tokenizer_json().dump();
  write_file(dir / "tokenizer.json", full.substr(0, full.size() / 2));
  EXPECT_COENC_ERROR(Tokenizer::load(dir.path().string()), "malformed JSON");
  write_file(dir / "tokenizer.json", "[1, 2]");
  EXPECT_COENC_ERROR(Tokenizer::load(dir.path().string()), "expected a JSON object at the top level");
  write_file(dir / "tokenizer.json", "");
  EXPECT_COENC_ERROR(Tokenizer::load((dir / "tokenizer.json").string()), "malformed JSON");
  // A number beyond a double: nlohmann throws out_of_range, not parse_error (found by fuzzing).
  write_file(dir / "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1e999}}}");
  EXPECT_COENC_ERROR(Tokenizer::load(dir.path().string()), "tokenizer.json: malformed JSON");
}

TEST(TokenizerErrors, UnknownComponentTypesNameTheField) {
  auto j = tiny_tokenizer_json();
  j["model"]["type"] = "WordPiece";
  EXPECT_NE(load_error(j).find("field model.type \"WordPiece\" is not supported (expected \"BPE\")"),
            std::string::npos)
      << load_error(j);
  j = tiny_tokenizer_json();
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  EXPECT_NE(load_error(j).find("field pre_tokenizer.type \"Metaspace\" is not supported"), std::string::npos)
      << load_error(j);
  j = tiny_tokenizer_json();
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}, {"behavior", "Isolated"}}}}};
  EXPECT_NE(
      load_error(j).find("field pre_tokenizer.pretokenizers[0].pattern.Regex is not a supported split regex"),
      std::string::npos)
      << load_error(j);
  j = tiny_tokenizer_json();
  j["normalizer"] = {{"type", "Lowercase"}};
  EXPECT_NE(load_error(j).find("field normalizer.type \"Lowercase\" is not supported"), std::string::npos);
  j = tiny_tokenizer_json();
  j["decoder"] = {{"type", "WordPiece"}};
  EXPECT_NE(load_error(j).find("field decoder.type \"WordPiece\" is not supported"), std::string::npos);
  j = tiny_tokenizer_json();
  j["post_processor"] = {{"type", "BertProcessing"}};
  EXPECT_NE(load_error(j).find("field post_processor.type \"BertProcessing\" is not supported"),
            std::string::npos);
}

TEST(TokenizerErrors, BadModelFields) {
  auto j = tiny_tokenizer_json();
  j["model"].erase("vocab");
  EXPECT_NE(load_error(j).find("field model.vocab is missing (expected an object)"), std::string::npos)
      << load_error(j);
  j = tiny_tokenizer_json();
  j["model"]["merges"] = "a b";
  EXPECT_NE(load_error(j).find("field model.merges must be an array, got string"), std::string::npos);
  j = tiny_tokenizer_json();
  j["model"]["merges"].push_back("x");
  EXPECT_NE(load_error(j).find("must be two tokens separated by one space, got \"x\""), std::string::npos)
      << load_error(j);
  j = tiny_tokenizer_json();
  j["model"]["merges"].push_back({"a", 3});
  EXPECT_NE(load_error(j).find("must be \"a b\" or [\"a\", \"b\"]"), std::string::npos) << load_error(j);
  j = tiny_tokenizer_json();
  j["model"]["merges"].push_back("zz q");
  EXPECT_NE(load_error(j).find("field model.merges[6]: token \"zz\" is not in the vocabulary"),
            std::string::npos)
      << load_error(j);
  j = tiny_tokenizer_json();
  j["model"]["merges"].push_back("a b");
  EXPECT_NE(load_error(j).find("merged token \"ab\" is not in the vocabulary"), std::string::npos)
      << load_error(j);
  j = tiny_tokenizer_json();
  j["model"]["vocab"]["a"] = -4;
  EXPECT_NE(load_error(j).find("field model.vocab.a must be a non-negative 32-bit integer"),
            std::string::npos)
      << load_error(j);
  j = tiny_tokenizer_json();
  j["model"]["vocab"]["a"] = "x";
  EXPECT_NE(load_error(j).find("field model.vocab.a must be a non-negative integer, got string"),
            std::string::npos);
  j = tiny_tokenizer_json();
  j["model"]["vocab"]["zzz"] = 5;
  EXPECT_NE(load_error(j).find("id 5 is given to two tokens"), std::string::npos) << load_error(j);
  j = tiny_tokenizer_json();
  j["model"]["unk_token"] = "<unk>";
  EXPECT_NE(load_error(j).find("field model.unk_token \"<unk>\" is not in the vocabulary"),
            std::string::npos);
  j = tiny_tokenizer_json();
  j["model"]["dropout"] = 0.1;
  EXPECT_NE(load_error(j).find("BPE dropout is not supported"), std::string::npos);
  j = tiny_tokenizer_json();
  j["model"]["ignore_merges"] = "yes";
  EXPECT_NE(load_error(j).find("field model.ignore_merges must be true or false, got string"),
            std::string::npos);
}

TEST(TokenizerErrors, BadAddedTokensAndTemplates) {
  auto j = tiny_tokenizer_json();
  j["added_tokens"].push_back({{"content", "<x>"}});
  EXPECT_NE(load_error(j).find("field added_tokens[3].id is missing"), std::string::npos) << load_error(j);
  j = tiny_tokenizer_json();
  j["added_tokens"].push_back({{"id", 999}, {"content", ""}});
  EXPECT_NE(load_error(j).find("field added_tokens[3].content must not be empty"), std::string::npos);
  // Ids near INT32_MAX would size the id table at 2^31 strings: refused, naming the field.
  j = tiny_tokenizer_json();
  j["added_tokens"].push_back({{"id", 2147483647}, {"content", "<big>"}});
  EXPECT_NE(load_error(j).find("added_tokens[3].id: token id 2147483647 is beyond any vocabulary"),
            std::string::npos)
      << load_error(j);
  j = tiny_tokenizer_json();
  j["model"]["vocab"]["far"] = 2147483646;
  EXPECT_NE(load_error(j).find("model.vocab.far: token id 2147483646 is beyond any vocabulary"), std::string::npos)
      << load_error(j);
  j = tiny_tokenizer_json();
  j["post_processor"]["single"][0]["SpecialToken"]["id"] = "<|nope|>";
  EXPECT_NE(
      load_error(j).find("special token \"<|nope|>\" is neither in special_tokens nor in the vocabulary"),
      std::string::npos)
      << load_error(j);
  // A template's special-token id beyond the vocabulary would come out of encode(add_special) as an id no
  // embedding row has (docs/reliability.md, finding 6; found by the tokenizer fuzz target).
  j = tiny_tokenizer_json();
  j["post_processor"]["special_tokens"]["<|bos|>"]["ids"] = {524};
  EXPECT_NE(load_error(j).find("post_processor.special_tokens.<|bos|>.ids[0] is 524, outside the vocabulary (265 "
                               "tokens)"),
            std::string::npos)
      << load_error(j);
}

TEST(TokenizerErrors, BadTokenizerConfig) {
  TempDir dir;
  EXPECT_COENC_ERROR(load_tokenizer_json(dir, tiny_tokenizer_json(), {{"bos_token", "<s>"}}),
                     "tokenizer_config.json: field bos_token \"<s>\" is not a token of the vocabulary");
  TempDir dir2;
  EXPECT_COENC_ERROR(load_tokenizer_json(dir2, tiny_tokenizer_json(), {{"eos_token", 7}}),
                     "field eos_token must be a string, an object with \"content\", or null, got number");
  TempDir dir3;
  write_file(dir3 / "tokenizer_config.json", "{\"bos_token\": ");
  write_file(dir3 / "tokenizer.json", tiny_tokenizer_json().dump());
  EXPECT_COENC_ERROR(Tokenizer::load(dir3.path().string()), "tokenizer_config.json: malformed JSON");
  write_file(dir3 / "tokenizer_config.json", "{\"model_max_length\": 1e999}");
  EXPECT_COENC_ERROR(Tokenizer::load(dir3.path().string()), "tokenizer_config.json: malformed JSON");
}

// coenc generate --messages: a list of {"role", "content"} or an OpenAI request body; anything else is one
// error naming the file.
TEST(ChatMessages, ParsedOrRefusedNamingTheFile) {
  const auto messages =
      parse_chat_messages(R"({"model": "m", "messages": [{"role": "user", "content": "hi"}]})", "chat.json");
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].role, "user");
  EXPECT_EQ(messages[0].content, "hi");
  EXPECT_COENC_ERROR(parse_chat_messages("[{\"role\": \"user\", \"content\": \"x\"}", "chat.json"),
                     "chat.json: malformed JSON");
  // nlohmann throws out_of_range for this one, which escaped as such (found by fuzzing).
  EXPECT_COENC_ERROR(parse_chat_messages("[{\"role\": \"user\", \"content\": 1e999}]", "chat.json"),
                     "chat.json: malformed JSON");
  EXPECT_COENC_ERROR(parse_chat_messages("[]", "chat.json"), "chat.json: expected a non-empty array");
  EXPECT_COENC_ERROR(parse_chat_messages(R"({"messages": {}})", "chat.json"), "expected a non-empty array");
  EXPECT_COENC_ERROR(parse_chat_messages(R"([{"role": "user"}])", "chat.json"),
                     "chat.json: message 0 must be an object with string fields \"role\" and \"content\"");
}

TEST(TokenizerErrors, NotASentencePieceModel) {
  TempDir dir;
  write_file(dir / "tokenizer.model", "this is not a protobuf");
  EXPECT_COENC_ERROR(Tokenizer::load(dir.path().string()),
                     "tokenizer.model: not a readable SentencePiece model");
}

// 31 bytes that libsentencepiece parses and then throws on inside darts_clone ("zero-length key"): the exception
// must not cross the module's C interface (docs/reliability.md, finding 5; found by the sentencepiece fuzz target).
TEST(TokenizerErrors, NotASentencePieceModelThatThrows) {
  TempDir dir;
  const unsigned char bytes[] = {
      0x0a, 0x0e, 0x0a, 0x05, 0x3c, 0x75, 0x6e, 0x6b, 0x3e, 0x15, 0x00, 0x00,
      0x00, 0x00, 0x18, 0x02, 0x0a, 0x0d, 0x0a, 0x04, 0x3c, 0x2f, 0x0a, 0x0e,
      0x0a, 0x05, 0x00, 0x00, 0x00, 0x00, 0xc9};
  write_file(dir / "tokenizer.model", std::string(reinterpret_cast<const char*>(bytes), sizeof bytes));
  EXPECT_COENC_ERROR(Tokenizer::load(dir.path().string()), "tokenizer.model: not a readable SentencePiece model");
}

TEST(TokenizerErrors, IdsOutOfRange) {
  TempDir dir;
  auto t = load_tokenizer_json(dir, tiny_tokenizer_json());
  EXPECT_COENC_ERROR(t->decode({1, 5000}), "token id 5000 is out of range (vocabulary size 265)");
  EXPECT_COENC_ERROR(t->decode({-1}), "token id -1 is out of range");
  EXPECT_COENC_ERROR(t->id_to_piece(265), "token id 265 is out of range");
  StreamDecoder stream(*t);
  EXPECT_COENC_ERROR(stream.push(100000), "token id 100000 is out of range");
}

}  // namespace
}  // namespace coenc::test
