// The decoder input of a question about compressed documents: the seed's raw layout, or the decoder's chat
// template with the compressed blocks inside the user turn.
#include <algorithm>

#include "coenc/co_encoder.h"
#include "coenc/error.h"

namespace coenc {

namespace {

// Stands for the compressed blocks while the chat text is rendered; control characters keep it out of real
// text.
constexpr const char* kContextMark = "\x1f\x1e coenc compressed context \x1e\x1f";

void add_unique(TokenIds& ids, TokenId id) {
  if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
}

}  // namespace

AskPrompt ask_prompt(CoEncoderImpl& model, const Tokenizer& tok, const std::vector<std::vector<torch::Tensor>>& documents,
                     const std::string& question, const AskOptions& options) {
  COENC_CHECK(!documents.empty() || !question.empty(), "nothing to ask: no documents and an empty question");
  AskPrompt p;
  for (TokenId id : model.config().text.eos_token_ids) add_unique(p.stop_tokens, id);
  std::vector<torch::Tensor> blocks;  // each [2 + sum k, d_text]
  for (const auto& chunks : documents) blocks.push_back(model.context_block(chunks));
  auto add_blocks = [&] {
    for (auto& block : blocks) {
      p.document_segments.push_back(p.segments.size());
      p.segments.push_back(Segment::embeddings(block));
    }
  };
  p.chat = options.chat && (!tok.chat_template().empty() || !options.chat_format.empty());
  if (!p.chat) {
    COENC_CHECK(options.system.empty(),
                "a system message needs the chat template (the raw layout has no turns)");
    EncodeOptions eo;
    eo.add_special = false;
    eo.parse_special = false;  // the question is user text: "<|im_end|>" typed in it is not the special token
    add_blocks();
    TokenIds q = tok.encode(question, eo);
    if (!q.empty()) p.segments.push_back(Segment::tokens(std::move(q)));
  } else {
    COENC_CHECK(question.find(kContextMark) == std::string::npos,
                "the question contains coenc's context marker");
    const ChatFormat format = resolve_chat_format(tok, options.chat_format);
    std::vector<ChatMessage> messages;
    if (!options.system.empty()) messages.push_back({"system", options.system});
    // One mark for all the blocks: they sit next to each other at the start of the user turn.
    messages.push_back({"user", (documents.empty() ? std::string() : std::string(kContextMark)) + question});
    ChatRenderOptions ro;
    if (auto bos = tok.bos_id()) ro.bos_token = tok.id_to_piece(*bos);
    if (auto eos = tok.eos_id()) ro.eos_token = tok.id_to_piece(*eos);
    const std::string text = render_chat(messages, format, ro);
    // As encode_chat (Hugging Face's apply_chat_template): special-token text is parsed, nothing is added.
    EncodeOptions eo;
    eo.add_special = false;
    eo.parse_special = true;
    size_t at = text.size(), mark_length = 0;
    if (!documents.empty()) {
      at = text.find(kContextMark);
      mark_length = std::char_traits<char>::length(kContextMark);
      COENC_CHECK(at != std::string::npos, "the {} chat template dropped the user turn's text",
                  chat_format_name(format));
    }
    TokenIds before = tok.encode(text.substr(0, at), eo);
    TokenIds after = at < text.size() ? tok.encode(text.substr(at + mark_length), eo) : TokenIds();
    if (!before.empty()) p.segments.push_back(Segment::tokens(std::move(before)));
    add_blocks();
    if (!after.empty()) p.segments.push_back(Segment::tokens(std::move(after)));
    for (TokenId id : chat_stop_ids(tok, format)) add_unique(p.stop_tokens, id);
  }
  for (const auto& s : p.segments) p.n_positions += s.length();
  return p;
}

AskPrompt ask_prompt(CoEncoderImpl& model, const Tokenizer& tok, const std::vector<torch::Tensor>& chunks,
                     const std::string& question, const AskOptions& options) {
  return ask_prompt(model, tok, std::vector<std::vector<torch::Tensor>>{chunks}, question, options);
}

}  // namespace coenc
