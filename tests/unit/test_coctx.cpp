// .coctx files: the round trip keeps every vector and record bit for bit; every kind of damage, a file of
// another model or format version is refused with a message naming the file and the fault. Also the
// checkpoint's tokenizers, and the pipeline (coenc/pipeline.h): documents prepared, checked to fit and compressed,
// the layout of a question about them (ask_prompt, one or several) and answer().
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "coenc/co_encoder.h"
#include "coenc/coctx.h"
#include "coenc/pipeline.h"
#include "coenc/safetensors.h"
#include "coenc/session.h"
#include "test_util.h"

namespace coenc {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;

const fs::path kTokenizerDir = test::test_dir() / "golden/tokenizer/trained";  // 1200 ids, ChatML template

json co_json(int64_t vocab = 97) {
  json tower = {{"model_type", "qwen2"},    {"vocab_size", vocab},          {"hidden_size", 24},
                {"intermediate_size", 40},  {"num_hidden_layers", 2},       {"num_attention_heads", 4},
                {"num_key_value_heads", 2}, {"max_position_embeddings", 64}};
  json decoder = {{"model_type", "llama"},    {"vocab_size", vocab + 4},       {"hidden_size", 32},
                  {"intermediate_size", 40},  {"num_hidden_layers", 1},        {"num_attention_heads", 4},
                  {"num_key_value_heads", 2}, {"max_position_embeddings", 256}};
  return {{"model_type", "co_encoder"},
          {"context_config", tower},
          {"text_config", decoder},
          {"begin_of_context_token_id", vocab + 2},
          {"end_of_context_token_id", vocab + 3},
          {"pooling", "mean"},
          {"compression_ratio", 4},
          {"chunk_size", 16}};
}

CoEncoder tiny(uint64_t seed = 1, int64_t vocab = 97, const std::string& markers = "tokens") {
  json j = co_json(vocab);
  j["context_markers"] = markers;
  return random_co_encoder(CoEncoderConfig::from_json(j, "config.json"), DeviceOptions{}, seed, 0.2);
}

TokenIds ids_of(int64_t n, int64_t vocab = 97) {
  TokenIds ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(static_cast<TokenId>((i * 37 + 11) % vocab));
  return ids;
}

// A good file to damage: 40 tokens = chunks of 16, 16 and 8 tokens -> 4, 4 and 2 vectors.
class Coctx : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = tiny();
    doc_ = compress_document(*model_, ids_of(40), "doc.txt");
    write_coctx(path(), doc_);
  }
  fs::path path() const { return dir_ / "doc.coctx"; }

  // Rewrites the file with its metadata and tensors changed by `edit` (and the checksum left as it was).
  void rewrite(const std::function<void(std::map<std::string, std::string>&,
                                        std::vector<std::pair<std::string, torch::Tensor>>&)>& edit) {
    auto f = SafetensorsFile::open(path());
    std::map<std::string, std::string> m = f->metadata();
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& e : f->entries()) tensors.emplace_back(e.name, f->tensor(e.name).clone());
    f.reset();
    edit(m, tensors);
    write_safetensors(path(), tensors, m);
  }
  void set_field(const std::string& key, const std::string& value) {
    rewrite([&](auto& m, auto&) { m[key] = value; });
  }

  TempDir dir_;
  CoEncoder model_{nullptr};
  CompressedDocument doc_;
};

TEST_F(Coctx, RoundTripKeepsEverything) {
  ASSERT_EQ(doc_.chunks.size(), 3u);
  EXPECT_EQ(doc_.chunk_tokens, (std::vector<int64_t>{16, 16, 8}));
  EXPECT_EQ(doc_.n_vectors(), 10);
  const TokenIds ids = ids_of(40);
  EXPECT_EQ(doc_.chunk_hashes[2], chunk_hash(TokenIds(ids.begin() + 32, ids.end())));
  EXPECT_NE(doc_.chunk_hashes[0], doc_.chunk_hashes[1]);

  CompressedDocument back = read_coctx(path(), model_->config(), model_->fingerprint());
  ASSERT_EQ(back.chunks.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(torch::equal(back.chunks[i], doc_.chunks[i])) << i;
  EXPECT_EQ(back.chunk_tokens, doc_.chunk_tokens);
  EXPECT_EQ(back.chunk_hashes, doc_.chunk_hashes);
  EXPECT_EQ(back.model_fingerprint, model_->fingerprint());
  EXPECT_EQ(back.pooling, "mean");
  EXPECT_EQ(back.ratio, 4);
  EXPECT_EQ(back.chunk_size, 16);
  EXPECT_EQ(back.d_text, 32);
  EXPECT_EQ(back.source, "doc.txt");
  auto f = SafetensorsFile::open(path());
  EXPECT_EQ(f->metadata().at("format_version"), "1");
  EXPECT_EQ(f->metadata().at("chunk_vectors"), "[4,4,2]");
  EXPECT_EQ(f->metadata().at("dtype"), "F32");
}

TEST_F(Coctx, FingerprintFollowsTheWeightsNotTheProcess) {
  // The same checkpoint loaded again: same fingerprint; its decoder does not count.
  save_co_encoder(*model_, dir_ / "ckpt");
  CoEncoder again = load_co_encoder(dir_ / "ckpt", DeviceOptions{});
  EXPECT_EQ(again->fingerprint(), model_->fingerprint());
  EXPECT_EQ(read_coctx(path(), again->config(), again->fingerprint()).chunks.size(), 3u);
  // One connector weight changed in its last bf16 bit: another model.
  CoEncoder other = load_co_encoder(dir_ / "ckpt", DeviceOptions{});
  {
    torch::NoGradGuard no_grad;
    auto w = other->named_parameters()["connector.linear_2.bias"];
    w[0].add_(0.05);
  }
  EXPECT_NE(other->fingerprint(), model_->fingerprint());
}

TEST_F(Coctx, FingerprintLeavesOutLearnedMarkers) {
  // Learned BOC/EOC rows belong to the decoder side: the same tower and connector read the same files, whatever
  // the markers are and however they train.
  CoEncoder learned = tiny(1, 97, "learned");
  EXPECT_EQ(learned->fingerprint(), model_->fingerprint());
  CoEncoder fresh = tiny(1, 97, "learned");
  {
    torch::NoGradGuard no_grad;  // rows moved by training
    fresh->named_parameters()["connector.begin_of_context"].add_(1.0);
    fresh->named_parameters()["connector.end_of_context"].mul_(-3.0);
  }
  EXPECT_EQ(fresh->fingerprint(), model_->fingerprint());
  CompressedDocument back = read_coctx(path(), fresh->config(), fresh->fingerprint());
  EXPECT_TRUE(torch::equal(back.chunks[0], doc_.chunks[0]));
  // A connector weight still counts.
  CoEncoder other = tiny(1, 97, "learned");
  {
    torch::NoGradGuard no_grad;
    other->named_parameters()["connector.linear_2.bias"][0].add_(0.05);
  }
  EXPECT_NE(other->fingerprint(), model_->fingerprint());
}

TEST_F(Coctx, CheckAgainstTheModelAfterReading) {
  const CompressedDocument read = read_coctx(path());  // no model needed yet
  EXPECT_NO_THROW(check_coctx_model(read, model_->config(), model_->fingerprint(), path()));
  CoEncoder foreign = tiny(/*seed=*/2);
  EXPECT_COENC_ERROR(check_coctx_model(read, foreign->config(), foreign->fingerprint(), path()),
                     "doc.coctx: compressed by another model");
  // The same model set to another ratio: the error names the ratios, not "another model".
  model_->set_compression_ratio(2);
  EXPECT_COENC_ERROR(check_coctx_model(read, model_->config(), model_->fingerprint(), path()),
                     "doc.coctx: compressed at ratio 4 (tokens per vector), but the model is set to ratio 2: read it "
                     "at ratio 4 (coenc ask --ratio 4)");
  model_->set_compression_ratio(4);
  EXPECT_NO_THROW(check_coctx_model(read, model_->config(), model_->fingerprint(), path()));
}

TEST_F(Coctx, RefusesAFileOfAnotherModel) {
  CoEncoder foreign = tiny(/*seed=*/2);
  EXPECT_COENC_ERROR(read_coctx(path(), foreign->config(), foreign->fingerprint()),
                     "doc.coctx: compressed by another model");
}

TEST_F(Coctx, RefusesATamperedByte) {
  std::string bytes = test::read_file(path());
  bytes[bytes.size() - 2] ^= 0x01;  // inside the last float of chunk.2: still finite
  test::write_file(path(), bytes);
  EXPECT_COENC_ERROR(read_coctx(path(), model_->config(), model_->fingerprint()),
                     "doc.coctx: damaged .coctx file: checksum mismatch");
}

TEST_F(Coctx, RefusesAnEditedMetadataField) {
  set_field("source", "other.txt");
  EXPECT_COENC_ERROR(read_coctx(path()), "checksum mismatch");
}

TEST_F(Coctx, RefusesAShapeThatDisagreesWithTheMetadata) {
  rewrite([](auto&, auto& t) { t[1].second = t[1].second.narrow(0, 0, 3).clone(); });
  EXPECT_COENC_ERROR(
      read_coctx(path()),
      "doc.coctx: damaged .coctx file: chunk.1 has shape [3, 32], but the metadata says [4, 32]");
  rewrite([](auto&, auto& t) { t[0].second = torch::zeros({4, 31}); });
  EXPECT_COENC_ERROR(read_coctx(path()), "chunk.0 has shape [4, 31]");
  write_coctx(path(), doc_);
  rewrite([](auto&, auto& t) { t[0].second = t[0].second.to(torch::kFloat16); });
  EXPECT_COENC_ERROR(read_coctx(path()), "chunk.0 is F16, but the metadata says F32");
}

TEST_F(Coctx, RefusesAMissingOrExtraChunk) {
  rewrite([](auto&, auto& t) { t.pop_back(); });
  EXPECT_COENC_ERROR(read_coctx(path()), "2 tensors, but the metadata lists 3 chunks");
  rewrite([](auto&, auto& t) { t.emplace_back("chunk.7", torch::zeros({2, 32})); });
  EXPECT_COENC_ERROR(read_coctx(path()), "tensor chunk.2 is missing (the metadata lists 3 chunks)");
}

TEST_F(Coctx, RefusesNonFiniteValues) {
  rewrite([](auto&, auto& t) { t[0].second[1][5] = std::numeric_limits<float>::quiet_NaN(); });
  EXPECT_COENC_ERROR(read_coctx(path()), "chunk.0 holds non-finite values");
  write_coctx(path(), doc_);
  rewrite([](auto&, auto& t) { t[2].second[0][0] = std::numeric_limits<float>::infinity(); });
  EXPECT_COENC_ERROR(read_coctx(path()), "chunk.2 holds non-finite values");
}

TEST_F(Coctx, RefusesBadOrMissingMetadata) {
  rewrite([](auto& m, auto&) { m.erase("n_tokens"); });
  EXPECT_COENC_ERROR(read_coctx(path()),
                     "doc.coctx: damaged .coctx file: metadata field \"n_tokens\" is missing");
  set_field("n_tokens", "41");
  EXPECT_COENC_ERROR(read_coctx(path()), "chunk_tokens add up to 40, n_tokens says 41");
  set_field("n_tokens", "forty");
  EXPECT_COENC_ERROR(read_coctx(path()), "\"n_tokens\" must be an integer in [1, 4294967296], got \"forty\"");
  set_field("n_tokens", "40");
  set_field("chunk_tokens", "[16, 16");
  EXPECT_COENC_ERROR(read_coctx(path()), "\"chunk_tokens\" is not a JSON array");
  set_field("chunk_tokens", "[16, 8, 16]");
  EXPECT_COENC_ERROR(read_coctx(path()), "chunk 1 has 8 tokens (chunk_size 16");
  set_field("chunk_tokens", "[16,16,8]");
  set_field("n_chunks", "2");
  EXPECT_COENC_ERROR(read_coctx(path()), "\"chunk_tokens\" must list 2 entries (n_chunks), got 3");
  set_field("n_chunks", "3");
  set_field("chunk_hashes", "[\"abc\", \"def\", \"0\"]");
  EXPECT_COENC_ERROR(read_coctx(path()), "chunk_hashes must hold 32-hex-digit strings");
  set_field("chunk_hashes", json(doc_.chunk_hashes).dump());
  // Counts that would make the per-chunk sums wrap are refused before anything is added up.
  set_field("chunk_vectors", "[4, 9223372036854775807, 9223372036854775807]");
  EXPECT_COENC_ERROR(read_coctx(path()), "\"chunk_vectors\" must hold integers in [1, 4294967296]");
  set_field("chunk_vectors", "[4, 4, 18446744073709551615]");
  EXPECT_COENC_ERROR(read_coctx(path()), "\"chunk_vectors\" must hold integers in [1, 4294967296]");
  set_field("chunk_vectors", "[4,4,2]");
  set_field("chunk_size", "999999999999999999");
  EXPECT_COENC_ERROR(read_coctx(path()), "\"chunk_size\" must be an integer in [1, 4294967296]");
  set_field("chunk_size", "16");
  set_field("pooling", "max");
  EXPECT_COENC_ERROR(read_coctx(path()), "pooling \"max\" (expected dynamic, mean or attn)");
  set_field("pooling", "mean");
  // Every field restored to what was written: the checksum agrees again.
  EXPECT_NO_THROW(read_coctx(path()));
}

TEST_F(Coctx, RefusesAnotherVersionOrFormat) {
  set_field("format_version", "2");
  EXPECT_COENC_ERROR(read_coctx(path()),
                     "doc.coctx: .coctx format version 2, but this coenc reads version 1");
  write_safetensors(path(), {{"x", torch::zeros({2})}}, {{"format", "pt"}});
  EXPECT_COENC_ERROR(read_coctx(path()), "doc.coctx: not a .coctx file");
  test::write_file(path(), "hello");
  EXPECT_COENC_ERROR(read_coctx(path()), "doc.coctx");
  EXPECT_COENC_ERROR(read_coctx(dir_ / "missing.coctx"), "missing.coctx");
}

TEST(CoEncoderTokenizers, FromTheCheckpointSubfolders) {
  TempDir d;
  CoEncoder m = tiny(1, 1200);
  save_co_encoder(*m, d.path());
  EXPECT_COENC_ERROR(load_co_encoder_tokenizers(d.path(), m->config()),
                     "no context (tower) tokenizer: expected tokenizer.json or tokenizer.model in " +
                         (d.path() / "context_tokenizer").string());
  for (const char* sub : {"context_tokenizer", "text_tokenizer"}) {
    fs::create_directories(d / sub);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      fs::copy_file(kTokenizerDir / f, d / sub / f);
  }
  CoEncoderTokenizers t = load_co_encoder_tokenizers(d.path(), m->config());
  EXPECT_EQ(t.context->vocab_size(), 1200);
  EXPECT_FALSE(t.text->chat_template().empty());
  // A tokenizer with more ids than its model's vocabulary belongs to another model.
  CoEncoder small = tiny(1, 97);
  EXPECT_COENC_ERROR(load_co_encoder_tokenizers(d.path(), small->config()),
                     "the tokenizer has 1200 ids but context_config.vocab_size is 97");
}

TEST(AskPrompt, RawLayoutIsTheSeeds) {
  CoEncoder m = tiny(1, 1200);
  auto tok = Tokenizer::load(kTokenizerDir.string());
  const std::vector<torch::Tensor> chunks = m->compress(ids_of(20, 1200));
  AskOptions o;
  o.chat = false;
  AskPrompt p = ask_prompt(*m, *tok, chunks, "What is it?", o);
  EXPECT_FALSE(p.chat);
  ASSERT_EQ(p.segments.size(), 2u);
  EXPECT_TRUE(torch::equal(p.segments[0].rows, m->context_block(chunks)));
  EncodeOptions eo;
  eo.parse_special = false;
  EXPECT_EQ(p.segments[1].ids, tok->encode("What is it?", eo));
  EXPECT_EQ(p.n_positions, 2 + 5 + static_cast<int64_t>(p.segments[1].ids.size()));  // 4 + 1 vectors
}

TEST(AskPrompt, TwoDocumentsRawLayoutIsBlockBlockQuestion) {
  CoEncoder m = tiny(1, 1200);
  auto tok = Tokenizer::load(kTokenizerDir.string());
  const std::vector<torch::Tensor> a = m->compress(ids_of(20, 1200));  // 4 + 1 vectors
  const TokenIds long_ids = ids_of(45, 1200);
  const std::vector<torch::Tensor> b = m->compress(TokenIds(long_ids.begin() + 38, long_ids.end()));
  ASSERT_EQ(b.size(), 1u);  // 7 tokens: 2 vectors
  AskOptions o;
  o.chat = false;
  AskPrompt p = ask_prompt(*m, *tok, {a, b}, "What is it?", o);
  EXPECT_FALSE(p.chat);
  ASSERT_EQ(p.segments.size(), 3u);
  EXPECT_EQ(p.document_segments, (std::vector<size_t>{0, 1}));
  // [BOC] a [EOC] [BOC] b [EOC] question: each block is that document's own block.
  EXPECT_TRUE(torch::equal(p.segments[0].rows, m->context_block(a)));
  EXPECT_TRUE(torch::equal(p.segments[1].rows, m->context_block(b)));
  ASSERT_EQ(p.segments[1].rows.size(0), 4);
  torch::Tensor marks = m->context_marks();
  EXPECT_TRUE(torch::equal(p.segments[1].rows[0], marks[0]));
  EXPECT_TRUE(torch::equal(p.segments[1].rows.narrow(0, 1, 2), b[0]));
  EXPECT_TRUE(torch::equal(p.segments[1].rows[3], marks[1]));
  EncodeOptions eo;
  eo.parse_special = false;
  EXPECT_EQ(p.segments[2].ids, tok->encode("What is it?", eo));
  EXPECT_EQ(p.n_positions, (2 + 5) + (2 + 2) + static_cast<int64_t>(p.segments[2].ids.size()));
  // The same as raw_prompt for these documents.
  std::vector<Segment> input = raw_prompt(*m, {a, b}, p.segments[2].ids);
  ASSERT_EQ(input.size(), 3u);
  for (size_t i = 0; i < 2; ++i) EXPECT_TRUE(torch::equal(input[i].rows, p.segments[i].rows)) << i;
  // Order matters: b first gives b's block first.
  AskPrompt swapped = ask_prompt(*m, *tok, {b, a}, "What is it?", o);
  EXPECT_TRUE(torch::equal(swapped.segments[0].rows, p.segments[1].rows));
  // The one-document overload is a list of one.
  AskPrompt one = ask_prompt(*m, *tok, a, "What is it?", o);
  AskPrompt list = ask_prompt(*m, *tok, std::vector<std::vector<torch::Tensor>>{a}, "What is it?", o);
  ASSERT_EQ(one.segments.size(), 2u);
  ASSERT_EQ(list.segments.size(), 2u);
  EXPECT_TRUE(torch::equal(one.segments[0].rows, list.segments[0].rows));
  EXPECT_EQ(one.segments[1].ids, list.segments[1].ids);
  EXPECT_EQ(one.document_segments, (std::vector<size_t>{0}));
  // No documents: the question alone.
  AskPrompt none = ask_prompt(*m, *tok, std::vector<std::vector<torch::Tensor>>{}, "What is it?", o);
  ASSERT_EQ(none.segments.size(), 1u);
  EXPECT_TRUE(none.document_segments.empty());
  EXPECT_COENC_ERROR(ask_prompt(*m, *tok, std::vector<std::vector<torch::Tensor>>{}, "", o), "nothing to ask");
}

// "{docN}" placeholders put a document's block inside the text, in both layouts; unnamed documents stay in front.
TEST(AskPrompt, PlaceholdersInterleaveDocumentsWithText) {
  CoEncoder m = tiny(1, 1200);
  auto tok = Tokenizer::load(kTokenizerDir.string());
  const std::vector<torch::Tensor> a = m->compress(ids_of(20, 1200)), b = m->compress(ids_of(9, 1200)),
                                   c = m->compress(ids_of(5, 1200));
  EncodeOptions raw;
  raw.parse_special = false;
  AskOptions o;
  o.chat = false;
  AskPrompt p = ask_prompt(*m, *tok, {a, b, c}, "Compare {doc3} with {doc1}. Which is older?", o);
  // b is not named: it stays in front; then the text with c and a where their placeholders were.
  ASSERT_EQ(p.segments.size(), 6u);
  EXPECT_EQ(p.document_segments, (std::vector<size_t>{4, 0, 2}));
  EXPECT_TRUE(torch::equal(p.segments[0].rows, m->context_block(b)));
  EXPECT_EQ(p.segments[1].ids, tok->encode("Compare ", raw));
  EXPECT_TRUE(torch::equal(p.segments[2].rows, m->context_block(c)));
  EXPECT_EQ(p.segments[3].ids, tok->encode(" with ", raw));
  EXPECT_TRUE(torch::equal(p.segments[4].rows, m->context_block(a)));
  EXPECT_EQ(p.segments[5].ids, tok->encode(". Which is older?", raw));
  // In the chat layout the same pieces sit inside the user turn.
  AskPrompt chat = ask_prompt(*m, *tok, {a, b}, "Is {doc2} a summary of {doc1}?");
  ASSERT_EQ(chat.segments.size(), 5u);
  EXPECT_EQ(chat.segments[0].ids, tok->encode("<|im_start|>user\nIs "));
  EXPECT_TRUE(torch::equal(chat.segments[1].rows, m->context_block(b)));
  EXPECT_EQ(chat.segments[2].ids, tok->encode(" a summary of "));
  EXPECT_TRUE(torch::equal(chat.segments[3].rows, m->context_block(a)));
  EXPECT_EQ(chat.segments[4].ids, tok->encode("?<|im_end|>\n<|im_start|>assistant\n"));
  // Text that only looks like a placeholder stays text; bad placeholders are named.
  AskPrompt plain = ask_prompt(*m, *tok, {a}, "What is {document} or {doc} or {docx}?", o);
  ASSERT_EQ(plain.segments.size(), 2u);
  EXPECT_EQ(plain.segments[1].ids, tok->encode("What is {document} or {doc} or {docx}?", raw));
  EXPECT_COENC_ERROR(ask_prompt(*m, *tok, {a, b}, "Compare {doc3}", o), "names {doc3}, but 2 document(s)");
  EXPECT_COENC_ERROR(ask_prompt(*m, *tok, {a, b}, "Compare {doc0}", o), "names {doc0}");
  EXPECT_COENC_ERROR(ask_prompt(*m, *tok, {a, b}, "{doc1} and {doc1}", o), "names {doc1} twice");
}

TEST(AskPrompt, TwoDocumentsSitInTheUserTurnBeforeTheQuestion) {
  CoEncoder m = tiny(1, 1200);
  auto tok = Tokenizer::load(kTokenizerDir.string());
  const std::vector<torch::Tensor> a = m->compress(ids_of(20, 1200)), b = m->compress(ids_of(9, 1200));
  AskPrompt p = ask_prompt(*m, *tok, {a, b}, "What is it?");
  EXPECT_TRUE(p.chat);
  ASSERT_EQ(p.segments.size(), 4u);
  EXPECT_EQ(p.segments[0].ids, tok->encode("<|im_start|>user\n"));
  EXPECT_EQ(p.document_segments, (std::vector<size_t>{1, 2}));
  EXPECT_TRUE(torch::equal(p.segments[1].rows, m->context_block(a)));
  EXPECT_TRUE(torch::equal(p.segments[2].rows, m->context_block(b)));
  EXPECT_EQ(p.segments[3].ids, tok->encode("What is it?<|im_end|>\n<|im_start|>assistant\n"));
  int64_t n = 0;
  for (const auto& s : p.segments) n += s.length();
  EXPECT_EQ(p.n_positions, n);
  // No documents: the plain chat prompt.
  AskPrompt none = ask_prompt(*m, *tok, std::vector<std::vector<torch::Tensor>>{}, "What is it?");
  ASSERT_EQ(none.segments.size(), 1u);
  EXPECT_EQ(none.segments[0].ids, tok->encode("<|im_start|>user\nWhat is it?<|im_end|>\n<|im_start|>assistant\n"));
}

TEST(AskPrompt, ChatTemplateWrapsTheBlockInTheUserTurn) {
  CoEncoder m = tiny(1, 1200);
  auto tok = Tokenizer::load(kTokenizerDir.string());
  const std::vector<torch::Tensor> chunks = m->compress(ids_of(20, 1200));
  AskOptions o;
  o.system = "Be brief.";
  AskPrompt p = ask_prompt(*m, *tok, chunks, "What is it?", o);
  EXPECT_TRUE(p.chat);
  ASSERT_EQ(p.segments.size(), 3u);
  EXPECT_EQ(p.segments[0].ids, tok->encode("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"));
  EXPECT_FALSE(p.segments[1].is_tokens());
  EXPECT_EQ(p.segments[2].ids, tok->encode("What is it?<|im_end|>\n<|im_start|>assistant\n"));
  EXPECT_NE(std::find(p.stop_tokens.begin(), p.stop_tokens.end(), 2), p.stop_tokens.end());  // <|im_end|>
  // Chat text with no template to follow.
  TempDir d;
  fs::copy_file(kTokenizerDir / "tokenizer.json", d / "tokenizer.json");
  auto bare = Tokenizer::load(d.path().string());
  ASSERT_TRUE(bare->chat_template().empty());
  EXPECT_FALSE(ask_prompt(*m, *bare, chunks, "q").chat);
  o.chat_format = "vicuna";
  EXPECT_COENC_ERROR(ask_prompt(*m, *bare, chunks, "q", o), "unknown chat format \"vicuna\"");
}

}  // namespace
}  // namespace coenc

namespace coenc {
namespace {

// The pipeline's documents: text is encoded and bounded before the model loads, .coctx content taken as read;
// compress_documents makes every count exact.
TEST(Pipeline, PreparesThenCompressesDocuments) {
  CoEncoder m = tiny(1, 1200);
  auto tok = Tokenizer::load(kTokenizerDir.string());
  const CoEncoderConfig& c = m->config();  // chunks of 16 tokens, r = 4, a decoder of 256 positions
  DocumentSource text{"a.txt", false, "Hello world. This is a small document about the sea and its ships.", {}};
  DocumentSource coctx{"b.coctx", true, "", compress_document(*m, ids_of(40, 1200), "b.txt")};
  std::vector<PreparedDocument> docs = prepare_documents({text, coctx}, c, *tok, 5);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].ids, encode_document("a.txt", text.text, *tok));
  EXPECT_EQ(docs[0].n_vectors, min_vectors(c, docs[0].n_tokens));
  EXPECT_TRUE(docs[0].doc.chunks.empty());
  EXPECT_TRUE(docs[1].exact);
  EXPECT_EQ(docs[1].n_vectors, 10);  // 16 + 16 + 8 tokens -> 4 + 4 + 2 vectors
  compress_documents(*m, docs, 5, false);
  EXPECT_TRUE(docs[0].exact);
  EXPECT_EQ(docs[0].doc.n_tokens(), docs[0].n_tokens);
  EXPECT_EQ(docs[0].doc.n_vectors(), docs[0].n_vectors);
  EXPECT_EQ(docs[0].doc.source, "a.txt");
  for (size_t i = 0; i < docs[0].doc.chunks.size(); ++i)  // the same vectors as the model's own compress
    EXPECT_TRUE(torch::equal(docs[0].doc.chunks[i], m->compress(docs[0].ids)[i])) << i;
  EXPECT_COENC_ERROR(prepare_documents({{"e.txt", false, "", {}}}, c, *tok, 5), "e.txt: the document is empty");
  EXPECT_COENC_ERROR(prepare_documents({{"bin", false, std::string("ab\0cd", 5), {}}}, c, *tok, 5),
                     "bin: not a text document (byte 2 is a NUL");
  // A .coctx of another model is refused once the model is there.
  CoEncoder other = tiny(2, 1200);
  std::vector<PreparedDocument> foreign = prepare_documents({coctx}, c, *tok, 5);
  EXPECT_COENC_ERROR(compress_documents(*other, foreign, 5, false), "b.coctx");
}

// The one check that documents fit: [BOC] v [EOC] per document plus the question's reserve, within the decoder's
// positions; one document is told to be split, several to be fewer.
TEST(Pipeline, OneCheckDecidesWhetherDocumentsFit) {
  const CoEncoderConfig c = tiny(1, 1200)->config();  // 256 decoder positions
  PreparedDocument big;
  big.name = "big.txt";
  big.n_tokens = 1100;
  big.n_vectors = 275;
  EXPECT_COENC_ERROR(check_documents_fit({big}, c, 5),
                     "big.txt: 1100 tokens compress into at least 275 vectors, but the decoder reads at most 256 "
                     "positions (text_config.max_position_embeddings, 5 kept for the question and answer): split "
                     "the document");
  PreparedDocument a = big, b = big;
  a.name = "a.txt";
  b.name = "b.coctx";
  a.n_vectors = b.n_vectors = 124;
  a.exact = b.exact = true;
  check_documents_fit({a}, c, 5);
  check_documents_fit({a, b}, c, 4);  // 4 + 126 + 126 = 256: exactly full
  EXPECT_COENC_ERROR(check_documents_fit({a, b}, c, 5),
                     "a.txt, b.coctx: the 2 documents compress into 124 + 124 vectors; with a [BOC] and an [EOC] "
                     "row each and 5 positions for the question and one answer token, they need 257 positions");
  try {
    check_documents_fit({big}, c, 0);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ExceedsContext);
  }
}

// The layout: the checkpoint's prompt_layout unless asked otherwise; contradictions and a system message
// without turns are refused before any work.
TEST(Pipeline, LayoutFollowsTheCheckpointUnlessAsked) {
  auto tok = Tokenizer::load(kTokenizerDir.string());  // has a ChatML template
  CoEncoderConfig c = tiny(1, 1200)->config();
  c.prompt_layout = "raw";
  EXPECT_FALSE(uses_chat_layout(c, *tok, AskOptions{}));
  AskOptions chat;
  chat.force_chat = true;
  EXPECT_TRUE(uses_chat_layout(c, *tok, chat));
  c.prompt_layout = "chat";
  EXPECT_TRUE(uses_chat_layout(c, *tok, AskOptions{}));
  AskOptions raw;
  raw.chat = false;
  EXPECT_FALSE(uses_chat_layout(c, *tok, raw));
  raw.system = "Be brief.";
  EXPECT_COENC_ERROR(uses_chat_layout(c, *tok, raw), "a system message needs the chat layout: the raw layout was asked for");
  AskOptions both;
  both.chat = false;
  both.force_chat = true;
  EXPECT_COENC_ERROR(uses_chat_layout(c, *tok, both), "the chat and raw layouts were both asked for");
  AskOptions unknown;
  unknown.chat_format = "vicuna";
  EXPECT_COENC_ERROR(uses_chat_layout(c, *tok, unknown), "unknown chat format \"vicuna\"");
}

// answer() is generate over ask_prompt in a new session, with the prompt's stop tokens: the same ids and text.
TEST(Pipeline, AnswerIsGenerationOverTheAskPrompt) {
  CoEncoder m = tiny(1, 1200);
  auto tok = Tokenizer::load(kTokenizerDir.string());
  const std::string question = "What is it about?";
  const int64_t reserve = question_reserve(*tok, question);
  std::vector<PreparedDocument> docs =
      prepare_documents({{"a.txt", false, "The sea, the ships and the harbour of a small town.", {}}}, m->config(),
                        *tok, reserve);
  compress_documents(*m, docs, reserve, false);
  AskOptions o;
  o.chat = false;
  GenerationOptions go;
  go.max_new_tokens = 6;
  go.sampling.temperature = 0;
  GenerationResult r = answer(*m, *tok, docs, question, o, go);
  AskPrompt p = ask_prompt(*m, *tok, {docs[0].doc.chunks}, question, o);
  Session s(m->language_model);
  go.stop_tokens = p.stop_tokens;
  go.detokenize = [&](const TokenIds& ids) { return tok->decode_bytes(ids, true); };
  GenerationResult e = generate(s, p.segments, go);
  EXPECT_EQ(r.ids, e.ids);
  EXPECT_EQ(r.text, e.text);
  EXPECT_EQ(r.n_prompt, p.n_positions);
  std::vector<PreparedDocument> uncompressed = prepare_documents({{"a.txt", false, "text", {}}}, m->config(), *tok, 2);
  EXPECT_COENC_ERROR(answer(*m, *tok, uncompressed, question, o, go), "answer needs compressed documents");
}

}  // namespace
}  // namespace coenc
