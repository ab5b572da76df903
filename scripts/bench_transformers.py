#!/usr/bin/env python3
"""The Hugging Face transformers side of `coenc bench`: the same shapes, random bf16 weights, same card.

  python3 scripts/bench_transformers.py --shape llama3-8b --prompt 4096 32768 --gen 128
  python3 scripts/bench_transformers.py --shape qwen2-0.5b --tower-chunks 64 --chunk 512

Prints one JSON object: a plain bf16 matmul rate (the card's practical ceiling), prefill seconds per prompt length
(SDPA attention, logits of the last position only, as generate() does), batch-1 greedy decode tokens/s through
generate(), and with --tower-chunks the hidden-state forward throughput of a batch of chunks.
"""
import argparse
import json
import time

import torch
import transformers

SHAPES = {
    "llama3-8b": ("LlamaConfig", dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                                      num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                                      max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
                                      rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                        high_freq_factor=4.0, original_max_position_embeddings=8192))),
    "qwen2-0.5b": ("Qwen2Config", dict(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                                       num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                                       max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                                       tie_word_embeddings=True)),
}


def timed(fn, reps):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def matmul_tflops():
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    s = timed(lambda: a @ b, 20)
    return 2 * 8192 ** 3 / s / 1e12


def build(shape):
    cls, kw = SHAPES[shape]
    config = getattr(transformers, cls)(**kw)
    config._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    model = model.to_empty(device="cuda").to(torch.bfloat16)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0, 0.02)
    # Buffers (RoPE inverse frequencies) were left uninitialised by to_empty: recompute them.
    for m in model.modules():
        if hasattr(m, "rope_init_fn") and hasattr(m, "inv_freq"):
            inv_freq, _ = m.rope_init_fn(m.config, m.inv_freq.device)
            m.inv_freq.copy_(inv_freq)
            if hasattr(m, "original_inv_freq"):
                m.original_inv_freq = inv_freq
    return model.eval(), config


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="llama3-8b", choices=sorted(SHAPES))
    ap.add_argument("--prompt", type=int, nargs="*", default=[])
    ap.add_argument("--gen", type=int, default=0)
    ap.add_argument("--tower-chunks", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    out = {"transformers": transformers.__version__, "torch": torch.__version__,
           "device": torch.cuda.get_device_name(), "shape": args.shape, "matmul_bf16_tflops": matmul_tflops()}
    model, config = build(args.shape)
    out["params"] = sum(p.numel() for p in model.parameters())
    g = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        out["prefill"] = []
        for n in args.prompt:
            ids = torch.randint(0, config.vocab_size, (1, n), device="cuda", generator=g)
            s = timed(lambda: model(ids, logits_to_keep=1, use_cache=True), args.reps)
            out["prefill"].append({"tokens": n, "seconds": s, "tokens_per_s": n / s})
            torch.cuda.empty_cache()
        if args.gen:
            ids = torch.randint(0, config.vocab_size, (1, 128), device="cuda", generator=g)
            kw = dict(do_sample=False, pad_token_id=0, eos_token_id=None)
            one = timed(lambda: model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw), args.reps)
            full = timed(lambda: model.generate(ids, max_new_tokens=args.gen + 1, min_new_tokens=args.gen + 1, **kw),
                         args.reps)
            out["decode"] = {"context": 128, "tokens": args.gen, "tokens_per_s": args.gen / (full - one)}
        if args.tower_chunks:
            ids = torch.randint(0, config.vocab_size, (args.tower_chunks, args.chunk), device="cuda", generator=g)
            base = model.model
            s = timed(lambda: base(ids, output_hidden_states=True, use_cache=False), args.reps)
            n = args.tower_chunks * args.chunk
            # 2 FLOPs per matmul weight per token (not the embedding table; no output head here), plus causal
            # attention (QK^T and PV over the lower half of the square); the same count as `coenc bench`.
            matmul = out["params"] - config.vocab_size * config.hidden_size * (1 if config.tie_word_embeddings else 2)
            head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
            flops = n * (2 * matmul + 2 * config.num_hidden_layers * config.num_attention_heads * head_dim * args.chunk)
            out["tower"] = {"chunks": args.tower_chunks, "chunk": args.chunk, "seconds": s, "tokens_per_s": n / s,
                            "tflops": flops / s / 1e12, "mfu": flops / s / (out["matmul_bf16_tflops"] * 1e12)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
