// Answering in the pipeline: compressed documents + a question -> prompt -> session -> generated text.
#include <algorithm>

#include "coenc/error.h"
#include "coenc/pipeline.h"
#include "coenc/session.h"

namespace coenc {

GenerationResult answer(CoEncoderImpl& model, const Tokenizer& text_tokenizer, const std::vector<PreparedDocument>& docs,
                        const std::string& question, const AskOptions& options, GenerationOptions go,
                        const TokenCallback& on_token) {
  std::vector<std::vector<torch::Tensor>> documents;
  int64_t n_vectors = 0;
  std::string names;
  for (const auto& d : docs) {
    COENC_CHECK_CODE(!d.doc.chunks.empty(), Internal, "{}: answer needs compressed documents (compress_documents)",
                     d.name);
    documents.push_back(d.doc.chunks);
    n_vectors += d.doc.n_vectors();
    names += (names.empty() ? "" : ", ") + d.name;
  }
  AskPrompt prompt = ask_prompt(model, text_tokenizer, documents, question, options);
  SessionOptions so;  // a context beyond the decoder's window: ExceedsContext from the session

  so.n_ctx = options.n_ctx;
  Session session(model.language_model, so);
  if (prompt.n_positions >= session.n_ctx())
    fail(ErrorCode::ExceedsContext,
         "{}: the compressed {} ({} vectors) and the question need {} positions, but the decoder holds {}{}",
         names.empty() ? std::string("the question") : names, docs.size() == 1 ? "document" : "documents", n_vectors,
         prompt.n_positions, session.n_ctx(), options.n_ctx > 0 ? " (the context size asked for)" : "");
  if (!options.ignore_eos) append_unique(go.stop_tokens, prompt.stop_tokens);
  if (!go.detokenize)
    go.detokenize = [&](const TokenIds& out) { return text_tokenizer.decode_bytes(out, /*skip_special=*/true); };
  return generate(session, prompt.segments, go, on_token);
}

}  // namespace coenc
