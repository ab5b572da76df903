// libFuzzer target: the JSON of coenc generate --messages through parse_chat_messages, then rendered in every
// chat format.
#include <cstdint>

#include "coenc/tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return coenc::fuzz::run_one([&] {
    const std::vector<coenc::ChatMessage> messages =
        coenc::parse_chat_messages({reinterpret_cast<const char*>(data), size}, "messages.json");
    COENC_FUZZ_EXPECT(!messages.empty());
    coenc::ChatRenderOptions options;
    options.bos_token = "<s>";
    options.eos_token = "</s>";
    for (coenc::ChatFormat format :
         {coenc::ChatFormat::ChatML, coenc::ChatFormat::Llama3, coenc::ChatFormat::Llama2,
          coenc::ChatFormat::Mistral, coenc::ChatFormat::Gemma}) {
      try {
        coenc::render_chat(messages, format, options);
      } catch (const coenc::Error&) {  // roles out of a format's order: the next format may take them
      }
    }
  });
}
