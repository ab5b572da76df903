// Tokenizers: text <-> token ids, identical to the reference libraries.
//
// Two backends sit behind one interface:
//   - Hugging Face `tokenizer.json` with a BPE model (byte-level BPE of the GPT-2, Llama-3 and Qwen2/2.5/3
//     families, and character BPE with byte fallback), added tokens, normalizers, pre-tokenizers,
//     post-processors and decoders as the `tokenizers` library defines them;
//   - SentencePiece `tokenizer.model` files (Llama-2, Mistral, Gemma style) through libsentencepiece.
// Both read the optional `tokenizer_config.json` beside them for bos/eos/pad tokens, `add_bos_token`,
// `add_eos_token` and the chat template.
//
// Input text is UTF-8. Bytes that are not valid UTF-8 are replaced by U+FFFD before encoding, one per maximal
// invalid subsequence (the rule of Python's `bytes.decode(errors="replace")`), so any byte string encodes and
// the result equals what the reference gives for the same text as Python decodes it.
//
// Tokenizers are immutable after load() and safe to use from several threads at once.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "coenc/types.h"

namespace coenc {

struct EncodeOptions {
  // Apply the model's post-processor: BOS (and EOS) or the TemplateProcessing of tokenizer.json; for
  // SentencePiece, `add_bos_token` / `add_eos_token` of tokenizer_config.json (BOS by default).
  bool add_special = false;
  // Text in the input that spells a special added token (e.g. "<|im_end|>") becomes that token. When false,
  // such text is encoded as ordinary text (HF `split_special_tokens=True`): use it for untrusted user input.
  // Non-special added tokens are always matched.
  bool parse_special = true;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads a tokenizer from `path`: a model directory holding tokenizer.json (preferred) or tokenizer.model
  // and optionally tokenizer_config.json, or a bare tokenizer.json / tokenizer.model file (then a
  // tokenizer_config.json in the same folder is still read). Throws coenc::Error naming the file and field
  // for missing files, malformed JSON and unsupported components.
  static std::unique_ptr<Tokenizer> load(const std::string& path);
  // Whether the directory `dir` holds a tokenizer that load() reads (tokenizer.json or tokenizer.model).
  static bool in_directory(const std::string& dir);

  // Encodes `text` (any bytes; see the file comment) into token ids.
  virtual TokenIds encode(std::string_view text, const EncodeOptions& options = {}) const = 0;

  // Decodes ids into UTF-8 text, as the reference decoder does; byte sequences that do not form valid UTF-8
  // become U+FFFD. With skip_special, special tokens are left out. Throws InvalidInput for an id outside
  // [0, vocab_size()).
  std::string decode(const TokenIds& ids, bool skip_special = false) const;

  // The bytes `ids` stand for, before the UTF-8 check decode() makes: a run of byte tokens may end inside a
  // multi-byte character. StreamDecoder is built on this.
  virtual std::string decode_bytes(const TokenIds& ids, bool skip_special) const = 0;

  // The vocabulary entry of `id` as stored in the file (e.g. "Ġhello" for byte-level BPE, "▁hello" for
  // SentencePiece, "<|im_end|>" for an added token). Throws InvalidInput for an id out of range.
  virtual std::string id_to_piece(TokenId id) const = 0;

  // The id of a vocabulary entry or added token spelled exactly `piece`, if there is one.
  virtual std::optional<TokenId> token_to_id(std::string_view piece) const = 0;

  // One past the largest valid id (model vocabulary plus added tokens).
  virtual int vocab_size() const = 0;

  // True for special tokens: added tokens flagged "special" and SentencePiece control pieces.
  virtual bool is_special(TokenId id) const = 0;

  // Special token ids from tokenizer_config.json (or, failing that, the usual added tokens); nullopt if the
  // tokenizer has none.
  std::optional<TokenId> bos_id() const { return bos_id_; }
  std::optional<TokenId> eos_id() const { return eos_id_; }
  std::optional<TokenId> pad_id() const { return pad_id_; }

  // The Jinja chat template of tokenizer_config.json ("" if none); see resolve_chat_template.
  const std::string& chat_template() const { return chat_template_; }

 protected:
  std::optional<TokenId> bos_id_, eos_id_, pad_id_;
  std::string chat_template_;
};

// The byte offset of the first byte of `text` that is not valid UTF-8 or is a NUL (the mark of a binary file),
// nullopt for clean text. Documents are refused with it rather than compressed as noise.
std::optional<size_t> first_non_text_byte(std::string_view text);

// Incremental decoding for streaming generation: feed ids one at a time and get back only text that is
// complete UTF-8. Bytes of a character split over several tokens are held back until the character is
// complete; bytes that can never become valid UTF-8 come out as U+FFFD. The concatenation of everything
// push() and finish() return equals tokenizer.decode(all ids, skip_special).
class StreamDecoder {
 public:
  // `tokenizer` must outlive the decoder.
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true);

  // Adds one id and returns the text that became complete ("" while a character is incomplete).
  std::string push(TokenId id);
  // Returns whatever is still held back (an incomplete character becomes U+FFFD) and resets the decoder.
  std::string finish();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  TokenIds ids_;  // the decoding window: ids_[0, read_) are already emitted
  size_t read_ = 0;
};

// ---- chat templates ---------------------------------------------------------------------------------------
// A tokenizer's chat template is the Jinja program of its tokenizer_config.json. Co-Encoder renders it as
// Hugging Face transformers' apply_chat_template does, with a Jinja subset that covers the templates of
// Llama-3.x, Qwen2.5/3, Mistral, Gemma, SmolLM, Phi and the like (docs/tokenizer.md, "Chat templates"). For a
// tokenizer without a template, or to override it, one of the built-in families below can be named instead;
// they follow the families' reference templates for plain system/user/assistant turns (no tools, no default
// system prompt, no date line).
enum class ChatFormat {
  ChatML,   // Qwen, many others: <|im_start|>role\ncontent<|im_end|>\n
  Llama3,   // <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
  Llama2,   // <s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] assistant </s>
  Mistral,  // <s>[INST] user [/INST] assistant</s> (system text prefixed to the first user turn)
  Gemma,    // <start_of_turn>user\ncontent<end_of_turn>\n, the assistant role is "model"
};

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant" (a Jinja template may know others, e.g. "tool")
  std::string content;
};

struct ChatRenderOptions {
  bool add_generation_prompt = true;  // end with the header that starts the assistant's turn
  std::string bos_token;  // text of the BOS token, the template's `bos_token` ("" when there is none)
  std::string eos_token;  // text of the EOS token, the template's `eos_token`
  // The template variable `enable_thinking` (Qwen3: false renders the empty <think></think> block that turns
  // thinking off); unset leaves it undefined, as apply_chat_template does without the keyword.
  std::optional<bool> enable_thinking;
  // More keyword arguments of apply_chat_template, each a template variable (a JSON object; null: none), as
  // llama.cpp's --chat-template-kwargs and vLLM's / llama-server's request field `chat_template_kwargs`: e.g.
  // {"enable_thinking": false}. The variables the renderer sets itself (messages, add_generation_prompt,
  // bos_token, eos_token) cannot be given: InvalidInput.
  nlohmann::ordered_json template_kwargs;
  // strftime_now(format) of the templates (Llama-3.1+ write "Today Date: 26 Jul 2024"): the current local
  // time unless set. Tests pin it.
  std::function<std::string(const std::string& format)> strftime_now;
};

namespace jinja {
class Template;
}

// A chat template: a Jinja template text, or a built-in family. Cheap to copy; immutable.
class ChatTemplate {
 public:
  // A built-in family (implicit: a ChatFormat goes wherever a template is expected).
  ChatTemplate(ChatFormat format);  // NOLINT(google-explicit-constructor)
  // Parses a Jinja chat template; `where` starts its error messages. Throws InvalidInput for a syntax error
  // and Unsupported for a construct outside the subset, naming the line and column.
  static ChatTemplate jinja(std::string_view source, std::string where = "chat_template");

  // The built-in family, or nullopt for a Jinja template.
  std::optional<ChatFormat> format() const { return format_; }
  // "chatml", "llama3", ... or, for a Jinja template, its `where`.
  std::string name() const;

 private:
  ChatTemplate() = default;
  std::optional<ChatFormat> format_;
  std::shared_ptr<const jinja::Template> jinja_;  // the parsed template (src/tokenizer/jinja.h)
  friend std::string render_chat(const std::vector<ChatMessage>&, const ChatTemplate&,
                                 const ChatRenderOptions&);
};

// Parses the JSON text of a conversation: an array of {"role": string, "content": string} objects, or an object
// whose "messages" field is such an array (an OpenAI request body). `where` names the source (a file) in errors.
// Throws InvalidInput for malformed JSON, an empty list, or a message that is not such an object; the roles are
// checked when the messages are rendered (render_chat).
std::vector<ChatMessage> parse_chat_messages(std::string_view json_text, const std::string& where);

// Parses a format name as users type it ("chatml", "llama3", "llama2", "mistral", "gemma"; case-insensitive).
// Throws InvalidInput listing the known names.
ChatFormat parse_chat_format(std::string_view name);
const char* chat_format_name(ChatFormat format);

// The chat template a tokenizer is used with: the family `format_name` if given (see parse_chat_format), else
// the tokenizer's own chat_template. Throws Unsupported, saying how to name a family, when it has none, and
// what ChatTemplate::jinja throws for a template outside the subset.
ChatTemplate resolve_chat_template(const Tokenizer& tokenizer, std::string_view format_name = {});

// Renders `messages` as prompt text. A Jinja template gets the variables apply_chat_template passes:
// messages, add_generation_prompt, bos_token, eos_token (those that are not empty), tools and documents
// (None), and enable_thinking when set; its raise_exception(message) becomes an InvalidInput error that
// quotes the message. A built-in family throws InvalidInput for an unknown role or (Llama2, Mistral, Gemma)
// roles out of their order.
std::string render_chat(const std::vector<ChatMessage>& messages, const ChatTemplate& chat,
                        const ChatRenderOptions& options);

// Renders `messages` with the tokenizer's own BOS/EOS text (when `options` leaves them empty) and encodes the
// result the way Hugging Face's apply_chat_template(tokenize=True) does: special-token text is parsed, no
// post-processor tokens are added.
TokenIds encode_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                     const ChatTemplate& chat, ChatRenderOptions options = {});

// The ids that end an assistant turn (for use as stop tokens): the tokenizer's EOS and the special token that
// the template writes right after an assistant message's text (<|im_end|>, <|eot_id|>, <end_of_turn>,
// <|end|>, ...).
TokenIds chat_stop_ids(const Tokenizer& tokenizer, const ChatTemplate& chat);

}  // namespace coenc
