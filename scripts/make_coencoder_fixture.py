#!/usr/bin/env python3
"""Builds the seed-parity fixture tests/golden/co_encoder/seed_tiny (run where torch and transformers exist).

A tiny random-initialised CoEncoderForConditionalGeneration is built with the seed project's own modeling code
(sudy-super/Co-Encoder: modeling_co_encoder.py, configuration_co_encoder.py), saved with its save_pretrained, and
run on two contexts: one much shorter than the dynamic pooling's minimum output size (32) and one longer.

The seed's code is not part of this repository. Copy its two files into .seed/ (ignored by git) before running;
this script imports a patched copy of them (in a temporary package), leaving .seed/ untouched. Each patch is a
text edit asserted to match exactly once, and each is only what a current transformers (5.x) requires:
  1. `from transformers.image_processing_utils import select_best_resolution` removed: unused, and the module
     moved in transformers 5.
  2. `from transformers.modeling_flash_attention_utils import FlashAttentionKwargs, _flash_attention_forward`
     removed: its signature changed in transformers 5; it only served the flash-attention class (patch 4).
  3. The `from transformers.utils import (...)` block keeps `logging`; the docstring decorators
     (add_start_docstrings*, replace_return_docstrings; changed or removed in transformers 5) become identity
     decorators, and the flash-attention probes return False, so the tower and decoder run eager attention.
  4. The pooling heads are built as the seed's own CoEncoderDynamicAttention (eager) instead of its subclass
     CoEncoderDynamicFlashAttention2, which needs the flash-attn package: same parameters and names, same
     non-causal softmax attention; with a mask, both zero the padded positions' scores and weights afterwards.
  5. CoEncoderForConditionalGeneration.tie_weights(self) accepts and forwards *args/**kwargs: transformers 5
     calls tie_weights(missing_keys=..., recompute_mapping=...).
  6. Only if transformers no longer exports `PretrainedConfig` (renamed PreTrainedConfig in 5.x): the config
     imports the new name under the old one.

Weights are random (normal, scaled so activations are not trivial), scale_param is set so that the dynamic size
lands away from the initial minimum, and the script retries seeds until (a) each context's continuous size is at
least 0.05 away from an integer (truncation is then robust to summation order) and (b) the seed's float32
torch.linspace span boundaries equal the exact integer ones floor(j n / k) our implementation uses.

Output: OUT_DIR/seed_tiny/ with config.json and model.safetensors from save_pretrained, and reference.safetensors:
  question_ids [Tq] I64; for CASE in short, long:
  context_ids_CASE [n] I64, features_CASE [n, d_tower] (tower hidden_states[-2]), size_CASE [1] I64 (k),
  pooled_CASE [k, d_tower] (dynamic pooling output), vectors_CASE [k, d_text] (connector output, the model's
  context_hidden_states), logits_CASE [k + 2 + Tq, V] (decoder logits over [BOC] vectors [EOC] question), all F32.

Usage: python3 scripts/make_coencoder_fixture.py OUT_DIR [SEED_DIR (default: .seed next to scripts/)]
"""
import importlib
import json
import os
import shutil
import sys
import tempfile

import torch
import transformers
from safetensors.torch import save_file

LENGTHS = {"short": 7, "long": 101}  # primes: span boundaries j n / k are never interior integers
N_QUESTION = 5
BOC, EOC = 99, 100

TOWER = dict(vocab_size=97, hidden_size=24, intermediate_size=40, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=10000.0,
             tie_word_embeddings=False, use_sliding_window=False)
DECODER = dict(vocab_size=101, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, head_dim=8, max_position_embeddings=256, rms_norm_eps=1e-5,
               rope_theta=10000.0, tie_word_embeddings=False)


def patch_once(text, old, new, what):
    count = text.count(old)
    if count != 1:
        raise SystemExit(f"patch '{what}': expected the seed text once, found it {count} times")
    return text.replace(old, new)


UTILS_BLOCK = """from transformers.utils import (
    add_start_docstrings,
    add_start_docstrings_to_model_forward,
    logging,
    replace_return_docstrings,
    is_flash_attn_2_available,
    is_flash_attn_greater_or_equal_2_10
)"""
UTILS_SHIM = """from transformers.utils import logging
def _identity_decorator(*args, **kwargs):
    return lambda f: f
add_start_docstrings = add_start_docstrings_to_model_forward = replace_return_docstrings = _identity_decorator
def is_flash_attn_2_available():
    return False
def is_flash_attn_greater_or_equal_2_10():
    return False"""


def import_seed(seed_dir):
    modeling = open(os.path.join(seed_dir, "modeling_co_encoder.py"), encoding="utf-8").read()
    configuration = open(os.path.join(seed_dir, "configuration_co_encoder.py"), encoding="utf-8").read()
    modeling = patch_once(modeling, "from transformers.image_processing_utils import select_best_resolution\n", "",
                          "1 select_best_resolution")
    modeling = patch_once(modeling, "from transformers.modeling_flash_attention_utils import FlashAttentionKwargs, "
                          "_flash_attention_forward\n", "", "2 flash attention utils")
    modeling = patch_once(modeling, UTILS_BLOCK, UTILS_SHIM, "3 transformers.utils imports")
    modeling = patch_once(modeling, """        self.size_estimation_attention = CoEncoderDynamicFlashAttention2(config)
        # Attention mechanism for weighted pooling
        self.weighted_pooling_attention = CoEncoderDynamicFlashAttention2(config)""",
                          """        self.size_estimation_attention = CoEncoderDynamicAttention(config)
        # Attention mechanism for weighted pooling
        self.weighted_pooling_attention = CoEncoderDynamicAttention(config)""", "4 eager pooling heads")
    modeling = patch_once(modeling, """    def tie_weights(self):
        return self.language_model.tie_weights()""", """    def tie_weights(self, *args, **kwargs):
        return self.language_model.tie_weights(*args, **kwargs)""", "5 tie_weights signature")
    import transformers.configuration_utils as cu
    if not hasattr(cu, "PretrainedConfig"):
        configuration = patch_once(configuration, "from transformers.configuration_utils import PretrainedConfig\n",
                                   "from transformers.configuration_utils import PreTrainedConfig as "
                                   "PretrainedConfig\n", "6 PretrainedConfig name")
    pkg_root = tempfile.mkdtemp(prefix="coencoder_seed_")
    pkg = os.path.join(pkg_root, "coencoder_seed")
    os.makedirs(pkg)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    open(os.path.join(pkg, "modeling_co_encoder.py"), "w", encoding="utf-8").write(modeling)
    open(os.path.join(pkg, "configuration_co_encoder.py"), "w", encoding="utf-8").write(configuration)
    sys.path.insert(0, pkg_root)
    return importlib.import_module("coencoder_seed.modeling_co_encoder"), \
        importlib.import_module("coencoder_seed.configuration_co_encoder")


def randomise(model, seed, scale_param):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale_param"):
                p.fill_(scale_param)
            elif name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)


def continuous_size(model, features, mask):
    """The seed's size formula before its .int(), recomputed from its own modules."""
    dp = model.connector.dynamic_pooling
    scores, _ = dp.size_estimation_attention(features, attention_mask=mask)
    scores = (scores.squeeze(-1) * mask).unsqueeze(-1)
    means = torch.sigmoid(scores).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)
    return (means * dp.scale_param * (dp.output_size_max - dp.output_size_min) + dp.output_size_min).item()


def run_case(model, ctx, question):
    ones = torch.ones_like(ctx)[None]
    with torch.no_grad():
        out = model(input_ids=question[None], context_input_ids=ctx[None], context_attention_mask=ones,
                    attention_mask=torch.ones_like(question)[None], output_attentions=False,
                    output_hidden_states=False, return_dict=True)
        features = model.context_tower(ctx[None], ones)
        pooled, pooled_mask, sizes = model.connector.dynamic_pooling(hidden_states=features, attention_mask=ones)
        cont = continuous_size(model, features, ones)
    k = int(sizes[0])
    assert bool(pooled_mask.all()), "batch of one: every pooled slot is real"
    assert out.context_hidden_states.shape[1] == k and out.logits.shape[1] == k + 2 + len(question)
    return dict(features=features[0], pooled=pooled[0], size=torch.tensor([k]), vectors=out.context_hidden_states[0],
                logits=out.logits[0]), cont


def decisive(n, k, cont):
    exact = (torch.arange(k + 1) * n) // k
    linspace = torch.linspace(0, n, steps=k + 1).long()
    frac = cont - int(cont)
    return torch.equal(exact, linspace) and 0.05 < frac < 0.95


def main():
    out_dir = sys.argv[1]
    seed_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                                  ".seed")
    print("transformers", transformers.__version__, "torch", torch.__version__)
    modeling, configuration = import_seed(seed_dir)
    context_config = transformers.Qwen2Config(**TOWER)
    text_config = transformers.LlamaConfig(**DECODER)
    config = configuration.CoEncoderConfig(
        context_config=context_config, text_config=text_config, projector_hidden_act="gelu",
        connector_hidden_act="gelu", context_feature_layer=-2, begin_of_context_token_id=BOC,
        end_of_context_token_id=EOC)
    model = modeling.CoEncoderForConditionalGeneration(config).eval()
    for seed in range(200):
        scale = 0.3 + 0.01 * (seed % 10)
        randomise(model, seed, scale)
        g = torch.Generator().manual_seed(10_000 + seed)
        question = torch.randint(3, BOC, (N_QUESTION,), generator=g)
        cases, ok = {}, True
        for name, n in LENGTHS.items():
            ctx = torch.randint(3, TOWER["vocab_size"], (n,), generator=g)
            ref, cont = run_case(model, ctx, question)
            ref["context_ids"] = ctx
            cases[name] = ref
            ok = ok and decisive(n, int(ref["size"][0]), cont)
            print(f"seed {seed}: {name} n={n} size {cont:.4f} -> k={int(ref['size'][0])}")
        if ok:
            break
    else:
        raise SystemExit("no seed gave decisive sizes")

    d = os.path.join(out_dir, "seed_tiny")
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    tensors = {"question_ids": question.to(torch.int64)}
    for name, ref in cases.items():
        for key, value in ref.items():
            t = value.detach().contiguous()
            tensors[f"{key}_{name}"] = t.to(torch.int64) if key in ("context_ids", "size") else t.float()
    meta = {"transformers": transformers.__version__, "torch": torch.__version__, "seed": str(seed),
            "scale_param": f"{scale:.2f}"}
    save_file(tensors, os.path.join(d, "reference.safetensors"), metadata=meta)
    print("config.json:", json.dumps(json.load(open(os.path.join(d, "config.json"))), sort_keys=True))
    from safetensors import safe_open
    with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
        print("weights:", sorted(f.keys()))
    for f in sorted(os.listdir(d)):
        print(f, os.path.getsize(os.path.join(d, f)), "bytes")


if __name__ == "__main__":
    main()
