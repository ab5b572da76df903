// Streaming decode, SentencePiece through the common interface, and chat formats.
#include <gtest/gtest.h>

#include <random>

#include "coenc/generate.h"
#include "coenc/tokenizer.h"
#include "test_util.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer_test_json.h"

namespace coenc::test {
namespace {

std::filesystem::path tiny_spm() {
  return test_dir() / "golden" / "tokenizer" / "tiny_spm.model";
}

TEST(StreamDecoder, HoldsBackPartialCharacters) {
  TempDir dir;
  auto t = load_tokenizer_json(dir, tiny_tokenizer_json());
  // é is two byte tokens, 😀 four: nothing comes out until the character is whole.
  StreamDecoder s(*t);
  EXPECT_EQ(s.push('a'), "a");
  EXPECT_EQ(s.push(0xC3), "");
  EXPECT_EQ(s.push(0xA9), "\xC3\xA9");
  EXPECT_EQ(s.push(0xF0), "");
  EXPECT_EQ(s.push(0x9F), "");
  EXPECT_EQ(s.push(0x98), "");
  EXPECT_EQ(s.push(0x80), "\xF0\x9F\x98\x80");
  // A byte that can never complete a character comes out as U+FFFD with what follows it.
  EXPECT_EQ(s.push(0xE3), "");
  EXPECT_EQ(s.push('b'),
            "\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(s.push(0xE3), "");
  EXPECT_EQ(s.finish(), "\xEF\xBF\xBD");
}

TEST(StreamDecoder, SkipsSpecialTokensWhenAsked) {
  TempDir dir;
  auto t = load_tokenizer_json(dir, tiny_tokenizer_json());
  TokenId eos = *t->token_to_id("<|eos|>");
  StreamDecoder skip(*t, true), keep(*t, false);
  EXPECT_EQ(skip.push(eos), "");
  EXPECT_EQ(keep.push(eos), "<|eos|>");
}

// Feeding ids one by one gives decode() of all of them, for byte-level BPE and SentencePiece alike.
void expect_stream_equals_decode(const Tokenizer& t, const std::string& text) {
  TokenIds ids = t.encode(text);
  StreamDecoder s(t, false);
  std::string streamed;
  for (TokenId id : ids) {
    std::string part = s.push(id);
    EXPECT_EQ(tok::incomplete_utf8_tail(part), 0u);
    EXPECT_TRUE(tok::is_valid_utf8(part));
    streamed += part;
  }
  streamed += s.finish();
  EXPECT_EQ(streamed, t.decode(ids, false)) << text;
}

TEST(StreamDecoder, ConcatenationEqualsDecode) {
  TempDir dir;
  auto bpe = load_tokenizer_json(dir, tiny_tokenizer_json());
  auto spm = Tokenizer::load(tiny_spm().string());
  for (const char* text :
       {"Hello world, the hello!", " leading space", "日本語のテキスト😀 and émoji 👍🏽",
        "multi\n\nline\ttext  ", "\xE3\x81"}) {
    expect_stream_equals_decode(*bpe, text);
    expect_stream_equals_decode(*spm, text);
  }
}

// TextStream, the path generation streams through: ids fed one at a time (as a model emits them), every delta
// is whole UTF-8 with no U+FFFD that the final text does not have at that place, and the deltas add up to
// decode().
void expect_text_stream_exact(const Tokenizer& t, const std::string& text) {
  TokenIds ids = t.encode(text, EncodeOptions{false, false});
  TextStream stream([&](const TokenIds& x) { return t.decode_bytes(x, true); });
  std::string streamed;
  TokenIds so_far;
  for (TokenId id : ids) {
    so_far.push_back(id);
    std::string delta = stream.update(so_far);
    EXPECT_TRUE(tok::is_valid_utf8(delta)) << text;
    streamed += delta;
    // What was streamed is always a prefix of the final text: nothing shown is ever taken back.
    EXPECT_EQ(t.decode(ids, true).compare(0, streamed.size(), streamed), 0) << text;
  }
  streamed += stream.flush();
  EXPECT_EQ(streamed, t.decode(ids, true)) << text;
  EXPECT_EQ(stream.text(), t.decode(ids, true)) << text;
}

const char* const kSplitCharacterTexts[] = {
    "東京は日本の首都です。大阪は",                                   // Japanese: 3 bytes a character
    "絵文字😀👍🏽 and a family 👨‍👩‍👧",          // 4-byte emoji, skin tone, ZWJ sequence
    "combining: e\xCC\x81 a\xCC\x8A n\xCC\x83 (decomposed accents)",  // base letter + combining mark
    "mixed 日本語 text, ascii, и кириллица"};

// Each text really has characters split across tokens of `t` (the test would prove nothing otherwise), and streams
// exactly.
void expect_split_characters_stream_exactly(const Tokenizer& t) {
  for (const char* text : kSplitCharacterTexts) {
    TokenIds ids = t.encode(text, EncodeOptions{false, false});
    bool split = false;
    for (TokenId id : ids) split = split || !tok::is_valid_utf8(t.decode_bytes({id}, true));
    EXPECT_TRUE(split) << text;
    expect_text_stream_exact(t, text);
  }
}

TEST(TextStream, CharactersSplitAcrossTokensStreamExactly) {
  TempDir dir;
  expect_split_characters_stream_exactly(*load_tokenizer_json(dir, tiny_tokenizer_json()));  // one token a byte
  expect_split_characters_stream_exactly(
      *Tokenizer::load((test_dir() / "golden/tokenizer/trained").string()));  // byte-level BPE
}

// SentencePiece with byte fallback (its own test: the sanitizer run cannot load the SentencePiece module).
TEST(TextStream, SentencePieceByteFallbackStreamsExactly) {
  expect_split_characters_stream_exactly(*Tokenizer::load(tiny_spm().string()));
}

TEST(TextStream, StopStringsAcrossCharactersAndTheHeldBackTail) {
  TempDir dir;
  auto t = load_tokenizer_json(dir, tiny_tokenizer_json());
  const std::string text = "答えは東京です。次の質問";
  TokenIds ids = t->encode(text, EncodeOptions{false, false});
  TextStream stream([&](const TokenIds& x) { return t->decode_bytes(x, true); }, {"。"});
  std::string streamed;
  TokenIds so_far;
  for (TokenId id : ids) {
    so_far.push_back(id);
    streamed += stream.update(so_far);
    if (stream.stop_hit()) break;
  }
  streamed += stream.flush();
  EXPECT_TRUE(stream.stop_hit());
  EXPECT_EQ(streamed, "答えは東京です");
  EXPECT_EQ(stream.text(), "答えは東京です");
  // An answer that ends inside a character: the tail comes out once, repaired, at the end.
  TextStream cut([&](const TokenIds& x) { return t->decode_bytes(x, true); });
  TokenIds partial(ids.begin(), ids.begin() + 4);  // 答 (3 bytes) and the first byte of え
  EXPECT_EQ(cut.update(partial), "答");
  EXPECT_EQ(cut.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(cut.text(), t->decode(partial, true));
}

TEST(SentencePiece, EncodesAsTheLibraryDoesAndAddsBos) {
  auto t = Tokenizer::load(tiny_spm().string());
  auto* sp = dynamic_cast<const tok::SentencePieceTokenizer*>(t.get());
  ASSERT_NE(sp, nullptr);
  const std::string text = "Hello world. 東京 12";
  EXPECT_EQ(t->encode(text), sp->encode_plain(text));
  EncodeOptions with;
  with.add_special = true;
  TokenIds ids = t->encode(text, with);
  ASSERT_TRUE(t->bos_id().has_value());
  EXPECT_EQ(ids.front(), *t->bos_id());
  EXPECT_EQ(t->decode(ids, true), text);
  EXPECT_TRUE(t->is_special(*t->bos_id()));
  EXPECT_EQ(t->id_to_piece(*t->bos_id()), "<s>");
  EXPECT_EQ(t->token_to_id("<s>"), t->bos_id());
  EXPECT_FALSE(t->token_to_id("no such piece").has_value());
}

TEST(SentencePiece, ControlPieceTextIsParsedOnlyWhenAsked) {
  auto t = Tokenizer::load(tiny_spm().string());
  TokenId eos = *t->eos_id();
  TokenIds parsed = t->encode("a</s>b");
  EXPECT_EQ(std::count(parsed.begin(), parsed.end(), eos), 1);
  EncodeOptions plain;
  plain.parse_special = false;
  TokenIds text = t->encode("a</s>b", plain);
  EXPECT_EQ(std::count(text.begin(), text.end(), eos), 0);
  EXPECT_EQ(t->decode(text), "a</s>b");
}

TEST(SentencePiece, ConfigTurnsBosOffAndEosOn) {
  TempDir dir;
  std::filesystem::copy_file(tiny_spm(), dir / "tokenizer.model");
  write_file(dir / "tokenizer_config.json", R"({"add_bos_token": false, "add_eos_token": true})");
  auto t = Tokenizer::load(dir.path().string());
  EncodeOptions with;
  with.add_special = true;
  TokenIds ids = t->encode("hi", with);
  EXPECT_NE(ids.front(), *t->bos_id());
  EXPECT_EQ(ids.back(), *t->eos_id());
}

TEST(SentencePiece, RandomBytesDoNotCrash) {
  auto t = Tokenizer::load(tiny_spm().string());
  std::mt19937 rng(5);
  for (int iter = 0; iter < 1000; ++iter) {
    std::string raw(rng() % 48, '\0');
    for (auto& c : raw) c = static_cast<char>(rng() % 256);
    TokenIds ids = t->encode(raw);
    std::string back = t->decode(ids);
    ASSERT_TRUE(tok::is_valid_utf8(back));
  }
}

const std::vector<ChatMessage> kChatSample = {{"system", "Be brief."}, {"user", "Hi!"}};

TEST(ChatFormat, ParsesFamilyNames) {
  EXPECT_EQ(parse_chat_format("ChatML"), ChatFormat::ChatML);
  EXPECT_EQ(parse_chat_format("gemma"), ChatFormat::Gemma);
  EXPECT_COENC_ERROR(parse_chat_format("vicuna"), "unknown chat format \"vicuna\" (known: chatml, llama3");
}

TEST(ChatFormat, TheTokenizersTemplateUnlessAFamilyIsNamed) {
  TempDir a, b, c;
  auto none = load_tokenizer_json(a, tiny_tokenizer_json());
  EXPECT_COENC_ERROR(resolve_chat_template(*none), "no chat_template in tokenizer_config.json; name a chat format");
  EXPECT_EQ(resolve_chat_template(*none, "gemma").format(), ChatFormat::Gemma);
  // Any template in the subset renders, as transformers renders it.
  auto own = load_tokenizer_json(b, tiny_tokenizer_json(), {{"chat_template", "{{ messages | map(attribute='role') | list }}"}});
  ChatTemplate chat = resolve_chat_template(*own);
  EXPECT_FALSE(chat.format().has_value());
  EXPECT_EQ(render_chat(kChatSample, chat, {}), "['system', 'user']");
  // One outside it is refused when resolved, naming the line.
  auto odd = load_tokenizer_json(c, tiny_tokenizer_json(), {{"chat_template", "{% include 'turn.jinja' %}"}});
  EXPECT_COENC_ERROR(resolve_chat_template(*odd),
                     "tokenizer_config.json: chat_template line 1, column 4: the {% include %} tag is not supported");
  EXPECT_EQ(resolve_chat_template(*odd, "chatml").name(), "chatml");
}

TEST(ChatFormat, StopIdsComeFromWhatTheTemplateWritesAfterAnAnswer) {
  // The trained test tokenizer: <|endoftext|> (0) is its EOS, its ChatML template ends turns with <|im_end|> (2).
  auto trained = Tokenizer::load((test_dir() / "golden/tokenizer/trained").string());
  EXPECT_EQ(chat_stop_ids(*trained, resolve_chat_template(*trained)), (TokenIds{0, 2}));
  EXPECT_EQ(chat_stop_ids(*trained, ChatFormat::ChatML), (TokenIds{0, 2}));
  // A template that refuses the probe conversation still stops at EOS.
  TempDir dir;
  auto strict = load_tokenizer_json(dir, tiny_tokenizer_json(),
                                    {{"chat_template", "{{ raise_exception('no') }}"}, {"eos_token", "<|eos|>"}});
  ASSERT_TRUE(strict->eos_id().has_value());
  EXPECT_EQ(chat_stop_ids(*strict, resolve_chat_template(*strict)), TokenIds{*strict->eos_id()});
}

const std::vector<ChatMessage> kChat = {
    {"system", "Be brief."}, {"user", "Hi!"}, {"assistant", "Hello."}, {"user", "2+2?"}};

TEST(ChatFormat, RendersChatML) {
  EXPECT_EQ(
      render_chat(kChat, ChatFormat::ChatML, {}),
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
      "Hello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatFormat, RendersLlama3) {
  ChatRenderOptions o;
  o.bos_token = "<|begin_of_text|>";
  o.add_generation_prompt = false;
  EXPECT_EQ(render_chat({{"user", " Hi! "}}, ChatFormat::Llama3, o),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>");
}

TEST(ChatFormat, RendersLlama2MistralAndGemma) {
  ChatRenderOptions o;
  o.bos_token = "<s>";
  o.eos_token = "</s>";
  EXPECT_EQ(render_chat(kChat, ChatFormat::Llama2, o),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>[INST] 2+2? [/INST]");
  EXPECT_EQ(render_chat(kChat, ChatFormat::Mistral, o),
            "<s>[INST] Be brief.\n\nHi! [/INST]Hello.</s>[INST] 2+2? [/INST]");
  o.eos_token.clear();
  EXPECT_EQ(
      render_chat(kChat, ChatFormat::Gemma, o),
      "<s><start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
      "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n");
}

// Keyword arguments reach the template as variables of any JSON type (tools replaces the None the renderer
// gives); the variables the renderer sets itself cannot be overridden, and only an object is taken.
TEST(ChatFormat, TemplateKwargsAreTemplateVariables) {
  const ChatTemplate chat = ChatTemplate::jinja(
      "{% if enable_thinking is defined and not enable_thinking %}[no think]{% endif %}{{ who }}/{{ n + 1 }}/"
      "{{ tools | length }}|{{ messages[0]['content'] }}",
      "test template");
  ChatRenderOptions o;
  o.template_kwargs = {{"enable_thinking", false}, {"who", "Ann"}, {"n", 41}, {"tools", {{{"a", 1}}, {{"b", 2}}}}};
  EXPECT_EQ(render_chat({{"user", "Hi"}}, chat, o), "[no think]Ann/42/2|Hi");
  o.template_kwargs = {{"messages", nlohmann::ordered_json::array()}};
  EXPECT_COENC_ERROR(render_chat({{"user", "Hi"}}, chat, o), "chat template kwargs cannot set \"messages\"");
  o.template_kwargs = nlohmann::ordered_json::array({1, 2});
  EXPECT_COENC_ERROR(render_chat({{"user", "Hi"}}, chat, o), "chat template kwargs must be a JSON object");
}

TEST(ChatFormat, RejectsBadRolesAndOrder) {
  EXPECT_COENC_ERROR(render_chat({{"robot", "x"}}, ChatFormat::ChatML, {}),
                     "chat message 0: unknown role \"robot\"");
  EXPECT_COENC_ERROR(render_chat({{"assistant", "x"}}, ChatFormat::Llama2, {}),
                     "needs alternating user/assistant turns starting with user");
}

}  // namespace
}  // namespace coenc::test
