// The pipeline: document -> chunks -> vectors -> prompt segments -> session.
//
// The one place where a document is read for compression, compressed, checked against the decoder's window and
// laid out with a question. `coenc ask` and `coenc compress` are thin wrappers around it, `coenc eval` and the
// trainer's objectives take their prompt layouts from it, and the server calls it the same way. Layers below it
// (model, engine, io) never read documents or lay out prompts; the CLI above it only parses flags and prints.
//
// A request runs in two halves, so that every mistake in the user's input is reported before the (slow) model
// load: prepare_documents (tokenizer and config only) then, with the model, compress_documents and answer.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <torch/torch.h>

#include "coenc/co_encoder.h"
#include "coenc/coctx.h"
#include "coenc/generate.h"
#include "coenc/tokenizer.h"
#include "coenc/types.h"

namespace coenc {

// ---- documents ------------------------------------------------------------------------------------------------

// One document of a request, as the caller has it: text to compress, or vectors read from a .coctx file.
struct DocumentSource {
  std::string name;           // file name or other label: messages name the document by it
  bool from_coctx = false;    // true: `coctx` holds vectors already compressed (read_coctx); false: `text`
  std::string text;           // the document's text, compressed by compress_documents
  CompressedDocument coctx;   // a .coctx file's content
};

// A document on its way into the prompt: tokenized (text) or read (.coctx) before the model is loaded,
// compressed (text) or checked against the model (.coctx) after.
struct PreparedDocument {
  std::string name;
  bool from_coctx = false;
  TokenIds ids;             // text: the context tokenizer's ids
  CompressedDocument doc;   // .coctx: as read; text: once compressed
  int64_t n_tokens = 0;
  int64_t n_vectors = 0;    // exact once compressed; before, for text, the fewest it can compress into
  bool exact = false;       // n_vectors is the real count (not a lower bound)
};

// The fewest vectors a document of `n_tokens` can compress into: mean and attn pool exactly ceil(T / r) per
// chunk, dynamic pooling at least min_output_size.
int64_t min_vectors(const CoEncoderConfig& config, int64_t n_tokens);

// Encodes a text document with the context tokenizer (no special tokens added; special-token text in it is plain
// text). Refuses, naming `name`, an empty document and one that is not UTF-8 text (a NUL or invalid byte).
TokenIds encode_document(const std::string& name, const std::string& text, const Tokenizer& context_tokenizer);

// Whether `docs` fit the decoder together: each is a block [BOC] v_1 .. v_k [EOC] (2 + k positions), and `reserve`
// positions follow them (the question and the first answer token; question_reserve). Throws ExceedsContext naming
// the documents and the counts (lower bounds where not yet exact): one document is told to be split, several to
// be fewer or shorter. This is the only place that decides whether documents fit.
void check_documents_fit(const std::vector<PreparedDocument>& docs, const CoEncoderConfig& config, int64_t reserve);

// The positions a question takes after the documents' blocks, plus one for the first answer token.
int64_t question_reserve(const Tokenizer& text_tokenizer, const std::string& question);

// Everything that does not need the model: text is encoded (encode_document), .coctx content taken as read, and
// the documents checked to fit (check_documents_fit, lower bounds for text). `config` carries the ratio the
// documents will be compressed at.
std::vector<PreparedDocument> prepare_documents(std::vector<DocumentSource> sources, const CoEncoderConfig& config,
                                                const Tokenizer& context_tokenizer, int64_t reserve);

// Compresses `document` (the context tokenizer's ids) with `model` and fills in everything a .coctx records
// (write_coctx). `on_progress(chunks_done, n_chunks)` as in CoEncoderImpl::compress. Throws InvalidInput for an
// empty document.
CompressedDocument compress_document(CoEncoderImpl& model, const TokenIds& document, const std::string& source,
                                     int64_t n_batch = 8,
                                     const std::function<void(int64_t, int64_t)>& on_progress = nullptr);

// With the model: compresses every text document (with a progress bar on stderr for documents of several chunks
// when `progress`: chunks done, tokens/s, ETA), checks every .coctx document against the model
// (check_coctx_model), then checks the exact counts (check_documents_fit).
// `n_batch` chunks go through the tower a forward pass.
void compress_documents(CoEncoderImpl& model, std::vector<PreparedDocument>& docs, int64_t reserve, bool progress,
                        int64_t n_batch = 8);

// ---- bulk compression: a library of documents, one .coctx each ------------------------------------------------

// One document of a bulk compression and the .coctx file it goes to.
struct BulkDocument {
  std::string name;              // the file, or CORPUS:N for the N-th document (1-based) of a corpus file
  std::filesystem::path output;  // its .coctx file
  std::string text;
};

// The documents of `paths` and `corpora`, in that order, each with its file in `out_dir`: a file gives one
// document (OUT/STEM.coctx); a directory every .txt and .md file below it, sorted (OUT/RELATIVE/STEM.coctx); a
// corpus file (.txt with "\n\n<|doc|>\n" between documents, or .jsonl with a "text" field; either may be .xz, as
// read_eval_documents reads them) one per document (OUT/CORPUS-STEM-NNNNNN.coctx, numbered from 1). Throws
// InvalidInput naming the path for a missing one, a directory without documents, and two documents that would
// write the same file.
std::vector<BulkDocument> bulk_documents(const std::vector<std::string>& paths, const std::vector<std::string>& corpora,
                                         const std::filesystem::path& out_dir);

struct BulkOptions {
  int64_t n_batch = 8;       // chunks a forward pass, across documents
  int64_t group_chunks = 0;  // documents are compressed in groups of about this many chunks (0: 8 x n_batch)
  bool force = false;        // compress documents whose .coctx is up to date too
  bool progress = true;      // a progress bar over the documents on stderr (documents, tokens/s, ETA)
  int threads = 0;  // threads tokenizing the next documents, and writing each finished group (0: half the cores,
                    // at most 8)
};

struct BulkResult {
  int64_t documents = 0;  // compressed now
  int64_t skipped = 0;    // up to date already: their .coctx was made by this model from the same tokens
  int64_t tokens = 0, vectors = 0, chunks = 0;  // of the documents compressed now
  double seconds = 0;     // tokenizing, compressing and writing, model load not included
  // Of `seconds`, the main thread's: queueing the model's work (batching the chunks, launching the tower and the
  // copies of its vectors to the host; on a GPU the host waits there only when the device's queue is full), and
  // waiting for the tokenizer threads or for the writer threads (which wait for each group's vectors, describe its
  // documents and write them). Tokenizing and writing run beside the model, so these say what bounds.
  double model_seconds = 0, tokenize_wait_seconds = 0, write_wait_seconds = 0;
  int threads = 0;  // BulkOptions::threads as used
};

// Compresses `docs` into their .coctx files (written atomically; folders made as needed), batching chunks across
// documents, `n_batch` a forward pass, so that a corpus of short documents still fills the batches (each file is
// what compress_document gives for that document). Resumable: a document whose .coctx reads back whole, was made
// by `model` and holds the same chunks (token hashes) is skipped unless options.force; one that is damaged or stale
// is compressed again. An empty or non-text document is an InvalidInput error naming it (nothing after it is lost:
// what was written stays, and a rerun skips it).
BulkResult compress_bulk(CoEncoderImpl& model, const Tokenizer& context_tokenizer,
                         const std::vector<BulkDocument>& docs, const BulkOptions& options);

// ---- prompts --------------------------------------------------------------------------------------------------

// How a question about compressed documents is laid out.
struct AskOptions {
  // Layout: the checkpoint's prompt_layout by default; `chat` false forces the raw layout, `force_chat` the
  // chat template (it must exist, or chat_format be given) even for a connector trained raw.
  bool chat = true;
  bool force_chat = false;
  std::string chat_format;  // chatml, llama3, ... (default: the tokenizer's chat_template; see resolve_chat_template)
  std::string system;       // a system message (chat only)
  // Keyword arguments of the chat template (chat only), e.g. {"enable_thinking": false}: ChatRenderOptions.
  nlohmann::ordered_json chat_template_kwargs;
  // Answering (answer()): keep going past the decoder's end-of-sequence / end-of-turn tokens, and the positions
  // of the session's context (0: the decoder's max_position_embeddings; more is an ExceedsContext error).
  bool ignore_eos = false;
  int64_t n_ctx = 0;
};

// Whether `options` lay the question out in the chat template (true) or the seed's raw layout (false), for a
// checkpoint of `config` whose decoder reads `text_tokenizer`: an explicit chat format or force_chat asks for
// chat; otherwise the checkpoint's prompt_layout decides ("raw": raw; else chat when there is a template). Throws,
// before anything is compressed, for contradictory options, a chat layout without a template, an unknown chat
// format (Unsupported) and a system message in the raw layout.
bool uses_chat_layout(const CoEncoderConfig& config, const Tokenizer& text_tokenizer, const AskOptions& options);

// The decoder input for a question about compressed documents.
struct AskPrompt {
  std::vector<Segment> segments;
  std::vector<size_t> document_segments;  // segments[document_segments[d]] is document d's [BOC v EOC] block
  TokenIds stop_tokens;  // the decoder's eos ids, plus the chat format's end-of-turn token
  bool chat = false;     // whether the chat template was applied
  int64_t n_positions = 0;
};

// `documents[d]` is document d's chunks (each [k_i, d_text]); each document becomes its own block
// [BOC] v_1 .. v_k [EOC] (CoEncoderImpl::context_block, an embedding segment), in the order given. Raw layout:
// the seed's `[BOC] v [EOC] [BOC] v [EOC] ... question` — nothing between the blocks, the question's tokens after
// them (no BOS, special-token text in the question read as plain text); one document gives exactly the seed's
// `[BOC] v [EOC] question`. Chat layout: the user turn holds block 1, block 2, ... and then the question; the chat
// text is rendered around placeholders and split there, giving [tokens before] [block 1] [block 2] ...
// [question, end of turn, assistant header]. No documents: the question alone (a no-context baseline). The layout
// is uses_chat_layout's. Positions are not checked against the decoder's max_position_embeddings: compare
// n_positions with it (answer does).
// Documents interleaved with text: the question may name documents by placeholder, `{doc1}`, `{doc2}`, ...
// (1-based, each at most once); a named document's block stands there instead, inside the text (e.g. "Compare
// {doc1} with {doc2}. Which is older?"), in both layouts. Documents not named keep their place before the
// question. A placeholder past the last document, or one used twice, is an InvalidInput error.
AskPrompt ask_prompt(CoEncoderImpl& model, const Tokenizer& text_tokenizer,
                     const std::vector<std::vector<torch::Tensor>>& documents, const std::string& question,
                     const AskOptions& options = {});
// One document: ask_prompt(model, text_tokenizer, {chunks}, question, options).
AskPrompt ask_prompt(CoEncoderImpl& model, const Tokenizer& text_tokenizer, const std::vector<torch::Tensor>& chunks,
                     const std::string& question, const AskOptions& options = {});

// A conversation whose messages mix text and compressed documents (the server's chat requests): each part of a
// message is text, or document `document`'s block (an index into conversation_prompt's `documents`).
struct ConversationPart {
  std::string text;
  int64_t document = -1;  // >= 0: this part is that document's [BOC] v [EOC] block
};
struct ConversationMessage {
  std::string role;  // "system", "user" or "assistant"
  std::vector<ConversationPart> parts;
};

// The decoder input of a conversation, in the layout uses_chat_layout chooses (options.system is not used: give
// a "system" message). Chat: the messages rendered with the chat template (ending with the assistant's header),
// each document's block where its part stands. Raw (the seed's layout, for connectors trained raw): the parts of
// every message in order, messages joined by a newline, no template; a system message is an error there.
// A document may stand in several places (its block is repeated); one never referred to is an error.
AskPrompt conversation_prompt(CoEncoderImpl& model, const Tokenizer& text_tokenizer,
                              const std::vector<std::vector<torch::Tensor>>& documents,
                              const std::vector<ConversationMessage>& messages, const AskOptions& options = {});

// The seed's decoder input from token ids: one embedding segment per document, [BOC] v [EOC] [BOC] v [EOC] ...,
// in order, then the question's tokens (when not empty). ask_prompt's raw layout of a question without
// placeholders is exactly this, from the question's text.
std::vector<Segment> raw_prompt(CoEncoderImpl& model, const std::vector<std::vector<torch::Tensor>>& documents,
                                const TokenIds& question);

// The uncompressed counterpart of `[BOC] v [EOC] question` (the full-context reading that training's qa_text
// objective teaches and evaluation's "full" condition measures): the context's text ids, a newline, then the
// question's ids.
TokenIds plain_text_prompt(const Tokenizer& text_tokenizer, const TokenIds& context_text_ids,
                           const TokenIds& question_ids);

// The lookup drill (training's objective lookup, `coenc eval --task lookup`): about kLookupCueTokens tokens of a
// document quoted in a question, about kLookupAnswerTokens tokens after them the answer, both whole words.
// lookup_question: `What follows "CUE" in the text?`, the cue's line breaks made spaces and its ends trimmed; ""
// when the cue is blank (nothing to quote).
constexpr int64_t kLookupCueTokens = 8, kLookupAnswerTokens = 8;
constexpr int64_t kLookupWordSlack = 4;  // tokens a cue or answer may move or grow by to start / end at a word's edge
std::string lookup_question(std::string cue);
// Whether token `pos` of `ids` begins a word: the text it adds to token pos - 1 (the two decoded together, so
// SentencePiece's "▁" and byte-level BPE's leading space both count) is empty or begins with a space, a line
// break or ASCII punctuation, or token pos - 1 ends with one. Token 0 and pos = size() (the document's end) do.
bool starts_word(const Tokenizer& tok, const TokenIds& ids, int64_t pos);
// Where one lookup question sits in `doc`: a window [begin, end) of `window` tokens (the whole document when
// shorter) at a random start; the cue [cue, answer) at a random place in it, then its answer [answer, stop).
// The cue starts at a word, and cue and answer end where a word ends, each moved or grown by at most
// kLookupWordSlack tokens to get there (a longer word is cut): the answer is whole words, as an extractive
// answer is. Nullopt (drawing nothing) when the document is shorter than a cue and its answer.
struct LookupSpan {
  int64_t begin = 0, end = 0;              // the window
  int64_t cue = 0, answer = 0, stop = 0;  // cue [cue, answer), answer [answer, stop)
};
std::optional<LookupSpan> draw_lookup_span(const TokenIds& doc, int64_t window, const Tokenizer& tok,
                                           std::mt19937_64& rng);

// The cloze drill (training's objectives cloze / cloze_text): a question made from a sentence of `text` by putting a
// wh-phrase where one of its names or numbers stands, that name or number the answer. This is the "identity
// mapping" of cloze translation (Lewis et al., "Unsupervised Question Answering by Cloze Translation", ACL 2019),
// whose questions alone taught extractive QA that transferred to SQuAD; unlike lookup it quotes nothing, and its
// answers are the short names, dates and counts SQuAD asks for.
// Sentences end at . ! or ? before a space (not after Mr, Mrs, Dr, St or an initial) or at a blank line; the first
// (a window starts mid-sentence) and an unfinished last one are skipped, as are sentences of fewer than 6 or more
// than 40 words. Answers: a run of 1-4 capitalised words that is not the sentence's first word ("what"; neither an
// all-caps heading nor a capitalised function word such as The, Yes or He is a name; a month alone is asked "what
// month"), or a number ("what year" for 1000-2099, "what day" for 1-31 beside a month, else "how many"). A
// possessive 's stays in the question. Line breaks inside a sentence become spaces; its final . or ! becomes ?.
//   "The battle was fought in 1066 near Hastings."  ->  "The battle was fought in what year near Hastings?" / "1066"
// Nullopt when no sentence has one. One draw, uniform over every (sentence, answer) the text offers.
struct ClozeQuestion {
  std::string question, answer;
};
std::optional<ClozeQuestion> make_cloze_question(std::string_view text, std::mt19937_64& rng);

// ---- export: the decoder input for other engines ---------------------------------------------------------------

// A prompt's decoder input as one tensor [n, d_text] (float32, CPU): token segments embedded by the model's decoder,
// embedding segments as they are. What vLLM's `prompt_embeds` and transformers' `inputs_embeds` take.
torch::Tensor prompt_rows(CoEncoderImpl& model, const std::vector<Segment>& segments);

enum class ExportFormat {
  Npy,   // NumPy .npy, float32 [n, d]
  Hf,    // safetensors {"inputs_embeds": float32 [1, n, d]} for transformers' generate(inputs_embeds=...)
  Vllm,  // a JSON request body for vLLM's /v1/completions: {"model", "prompt_embeds": base64 of torch.save(rows),
         // "max_tokens"} (libtorch's pickle_save, which Python's torch.load reads)
};
// "npy", "hf" or "vllm" (InvalidInput naming the choices otherwise).
ExportFormat parse_export_format(const std::string& name);
// Writes `rows` [n, d] to `path` atomically in `format`; `model_name` and `max_tokens` go into the vLLM request.
void export_rows(const torch::Tensor& rows, ExportFormat format, const std::filesystem::path& path,
                 const std::string& model_name = "", int max_tokens = 64);
std::string base64_encode(const std::string& bytes);

// ---- answering ------------------------------------------------------------------------------------------------

// Answers `question` about the compressed `docs` (compress_documents done): lays the prompt out (ask_prompt),
// checks that it leaves room to answer in a new session of the model's decoder (ExceedsContext naming the
// documents), adds the prompt's stop tokens to `go`'s (unless options.ignore_eos) and the text tokenizer's
// detokenizer when `go` has none, and generates in a session of options.n_ctx positions, calling `on_token` as
// tokens come.
GenerationResult answer(CoEncoderImpl& model, const Tokenizer& text_tokenizer, const std::vector<PreparedDocument>& docs,
                        const std::string& question, const AskOptions& options, GenerationOptions go,
                        const TokenCallback& on_token = {});

// ---- conversations --------------------------------------------------------------------------------------------

// A conversation of several turns about compressed documents (`coenc chat`). The documents are compressed once
// (compress_documents, before); every turn lays the whole conversation out (conversation_prompt: the first kept
// user message holds every document's block, then its text; options.system as a system message), and the one
// session it keeps feeds only what differs from what it already holds: the KV cache of the documents and the
// earlier turns is reused, so a follow-up question costs its own tokens, not the documents' again. When the
// conversation would leave fewer than `go.max_new_tokens` positions to answer in, the oldest exchanges are
// dropped (the documents stay, moved into the first kept user message).
class Conversation {
 public:
  Conversation(CoEncoderImpl& model, const Tokenizer& text_tokenizer, std::vector<PreparedDocument> docs,
               AskOptions options);
  ~Conversation();
  Conversation(const Conversation&) = delete;
  Conversation& operator=(const Conversation&) = delete;

  // What the last reply cost: positions of its prompt fed to the decoder, positions reused from the cache, and
  // the earliest exchanges dropped to fit the window (in all, since the start or reset()).
  struct TurnCost {
    int64_t n_fed = 0, n_reused = 0, n_dropped = 0;
  };

  // Answers `user_text` given the earlier turns, streaming through `on_token` (returning false stops the answer
  // where it is); the exchange, with the answer as far as it got, joins the history. Throws ExceedsContext when
  // the documents and this message alone leave no room to answer.
  GenerationResult reply(const std::string& user_text, GenerationOptions go, const TokenCallback& on_token = {});
  // Forgets every exchange (the documents and the system message stay) and empties the cache.
  void reset();

  const TurnCost& last_cost() const { return cost_; }
  size_t n_exchanges() const { return exchanges_.size(); }
  const std::vector<PreparedDocument>& documents() const { return docs_; }

 private:
  struct Exchange {
    std::string user, assistant;
  };
  AskPrompt lay_out(size_t first_exchange, const std::string& user_text);

  CoEncoderImpl& model_;
  const Tokenizer& tok_;
  std::vector<PreparedDocument> docs_;
  AskOptions options_;
  std::vector<Exchange> exchanges_;
  size_t first_kept_ = 0;           // exchanges before this one were dropped to fit the window
  std::unique_ptr<Session> session_;
  std::vector<Segment> fed_;        // what the session holds, as segments (prompts and fed answer tokens)
  TurnCost cost_;
};

}  // namespace coenc
