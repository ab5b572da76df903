#!/usr/bin/env python3
"""Checks `coenc compress --export` against Hugging Face transformers (docs/server.md, "Vectors out").

    python3 scripts/check_export_transformers.py DECODER_DIR EXPORT_DIR

EXPORT_DIR holds what `coenc` wrote for one document and question, on a Co-Encoder whose decoder is DECODER_DIR:
  rows.safetensors   coenc compress --export hf   --question Q      {"inputs_embeds": [1, n, d]}
  rows.npy           coenc compress --export npy  --question Q      [n, d] float32
  request.json       coenc compress --export vllm --question Q      {"prompt_embeds": base64 of torch.save(rows)}
  ask.json           coenc ask --json -n N Q                        the greedy answer's token ids
The three exports must hold the same rows, and transformers' greedy `generate(inputs_embeds=rows)` must give the
answer `coenc ask` gave, token for token. Prints one line per check; exits 1 if any fails. Needs torch,
transformers, safetensors and numpy (the GPU machine has them; runs on CPU or CUDA, float32).
"""
import base64
import io
import json
import os
import sys

import numpy
import safetensors.torch
import torch
import transformers


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    decoder_dir, export_dir = sys.argv[1], sys.argv[2]
    failures = 0

    def check(ok, what):
        nonlocal failures
        print(("ok    " if ok else "FAIL  ") + what)
        failures += 0 if ok else 1

    hf = safetensors.torch.load_file(os.path.join(export_dir, "rows.safetensors"))["inputs_embeds"]
    npy = torch.from_numpy(numpy.load(os.path.join(export_dir, "rows.npy")))
    with open(os.path.join(export_dir, "request.json")) as f:
        request = json.load(f)
    pickled = torch.load(io.BytesIO(base64.b64decode(request["prompt_embeds"])), weights_only=True)
    check(hf.dtype == torch.float32 and hf.dim() == 3 and hf.shape[0] == 1,
          f"hf: inputs_embeds float32 [1, n, d]: {hf.dtype} {list(hf.shape)}")
    check(torch.equal(npy, hf[0]), f"npy rows == hf rows ({list(npy.shape)})")
    check(torch.equal(pickled.float(), hf[0]), f"vllm prompt_embeds (torch.load) == hf rows ({list(pickled.shape)})")

    with open(os.path.join(export_dir, "ask.json")) as f:
        want = json.load(f)["ids"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = transformers.AutoModelForCausalLM.from_pretrained(decoder_dir, torch_dtype=torch.float32).to(device).eval()
    check(hf.shape[2] == model.config.hidden_size, f"rows are {hf.shape[2]} wide, the decoder {model.config.hidden_size}")
    with torch.no_grad():
        out = model.generate(inputs_embeds=hf.to(device), attention_mask=torch.ones(hf.shape[:2], dtype=torch.long,
                             device=device), max_new_tokens=len(want), min_new_tokens=len(want), do_sample=False,
                             pad_token_id=model.config.eos_token_id)
    got = out[0, -len(want):].tolist()
    check(got == want, f"transformers generate(inputs_embeds) on {device}: {got}\n      coenc ask:                         {want}")
    print(f"transformers {transformers.__version__}, torch {torch.__version__}: "
          f"{'all checks passed' if not failures else f'{failures} check(s) failed'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
