// Export of a prompt's decoder input for the engines that serve big decoders (vLLM prompt_embeds, transformers
// inputs_embeds, NumPy): docs/server.md, "Vectors out".
#include <cstring>

#include <nlohmann/json.hpp>

#include "coenc/atomic_file.h"
#include "coenc/error.h"
#include "coenc/pipeline.h"
#include "coenc/safetensors.h"

namespace coenc {

torch::Tensor prompt_rows(CoEncoderImpl& model, const std::vector<Segment>& segments) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  const auto dev = model.device_options().device;
  for (const auto& s : segments) {
    if (s.is_tokens()) {
      parts.push_back(model.language_model->embed(torch::tensor(s.ids, torch::kInt64).to(dev).unsqueeze(0)).squeeze(0));
    } else {
      parts.push_back(s.rows);
    }
  }
  COENC_CHECK(!parts.empty(), "nothing to export: the prompt is empty");
  for (auto& p : parts) p = p.to(torch::kCPU, torch::kFloat32);
  return torch::cat(parts, 0).contiguous();
}

ExportFormat parse_export_format(const std::string& name) {
  if (name == "npy") return ExportFormat::Npy;
  if (name == "hf") return ExportFormat::Hf;
  if (name == "vllm") return ExportFormat::Vllm;
  fail(ErrorCode::InvalidInput, "--export must be npy, hf or vllm, got \"{}\"", name);
}

std::string base64_encode(const std::string& bytes) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<uint32_t>(static_cast<uint8_t>(bytes[i])) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[i + 1])) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 2]);
    out += k[n >> 18];
    out += k[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? k[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? k[n & 63] : '=';
  }
  return out;
}

void export_rows(const torch::Tensor& rows_in, ExportFormat format, const std::filesystem::path& path,
                 const std::string& model_name, int max_tokens) {
  COENC_CHECK(rows_in.dim() == 2, "export: rows must be [n, d], got {} dimensions", rows_in.dim());
  const torch::Tensor rows = rows_in.to(torch::kCPU, torch::kFloat32).contiguous();
  const std::string data(static_cast<const char*>(rows.data_ptr()), static_cast<size_t>(rows.numel()) * 4);
  switch (format) {
    case ExportFormat::Npy: {
      // NPY format 1.0: magic, version, header length (the header padded with spaces to a multiple of 64 bytes,
      // ending in a newline), then the little-endian data.
      std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows.size(0)) +
                           ", " + std::to_string(rows.size(1)) + "), }";
      const size_t total = 10 + header.size() + 1;
      header += std::string((64 - total % 64) % 64, ' ') + "\n";
      std::string out = "\x93NUMPY";
      out += '\x01';
      out += '\x00';
      out += static_cast<char>(header.size() & 0xff);
      out += static_cast<char>(header.size() >> 8);
      write_file_atomic(path, out + header + data);
      return;
    }
    case ExportFormat::Hf:
      write_safetensors(path, {{"inputs_embeds", rows.unsqueeze(0)}},
                        {{"format", "pt"}, {"coenc", "decoder input rows: generate(inputs_embeds=...)"}});
      return;
    case ExportFormat::Vllm: {
      const std::vector<char> pickled = torch::pickle_save(rows);
      nlohmann::json body = {{"model", model_name},
                             {"prompt_embeds", base64_encode(std::string(pickled.begin(), pickled.end()))},
                             {"max_tokens", max_tokens}};
      write_file_atomic(path, body.dump() + "\n");
      return;
    }
  }
}

}  // namespace coenc
