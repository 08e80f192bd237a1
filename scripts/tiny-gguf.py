#!/usr/bin/env python3
"""A tiny llama-architecture model that llama.cpp really loads and runs.

Random F32 weights (seeded: the same bytes every time), a SentencePiece
style vocabulary of the control tokens, the 256 byte tokens and the
printable ASCII characters, and a ChatML chat template: about 0.5 MB,
thousands of tokens per second on a CPU. Its answers are noise; tests and
the main job check that a chat completes, not what it says.

Usage: tiny-gguf.py OUT.gguf   (needs the `gguf` and `numpy` packages)
"""
import sys

import gguf
import numpy as np

EMBED, LAYERS, HEADS, FFN, CONTEXT = 64, 2, 4, 128, 2048
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def vocabulary():
    kinds = gguf.TokenType
    tokens = [("<unk>", kinds.UNKNOWN), ("<s>", kinds.CONTROL), ("</s>", kinds.CONTROL),
              ("<|im_start|>", kinds.CONTROL), ("<|im_end|>", kinds.CONTROL)]
    tokens += [(f"<0x{b:02X}>", kinds.BYTE) for b in range(256)]
    tokens += [("\u2581", kinds.NORMAL)]
    tokens += [(chr(c), kinds.NORMAL) for c in range(0x21, 0x7F)]
    scores = [0.0 if kind != kinds.NORMAL else -float(i) for i, (_, kind) in enumerate(tokens)]
    return [t for t, _ in tokens], scores, [int(k) for _, k in tokens]


def main(out):
    rng = np.random.default_rng(20261207)
    tokens, scores, kinds = vocabulary()

    def weights(*shape):
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    w = gguf.GGUFWriter(out, "llama")
    w.add_name("owui tiny test model")
    w.add_context_length(CONTEXT)
    w.add_embedding_length(EMBED)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(HEADS)
    w.add_rope_dimension_count(EMBED // HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(kinds)
    w.add_bos_token_id(1)
    w.add_eos_token_id(4)
    w.add_unk_token_id(0)
    w.add_chat_template(CHATML)

    w.add_tensor("token_embd.weight", weights(len(tokens), EMBED))
    for i in range(LAYERS):
        block = f"blk.{i}"
        w.add_tensor(f"{block}.attn_norm.weight", np.ones(EMBED, dtype=np.float32))
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(f"{block}.{part}.weight", weights(EMBED, EMBED))
        w.add_tensor(f"{block}.ffn_norm.weight", np.ones(EMBED, dtype=np.float32))
        w.add_tensor(f"{block}.ffn_gate.weight", weights(FFN, EMBED))
        w.add_tensor(f"{block}.ffn_up.weight", weights(FFN, EMBED))
        w.add_tensor(f"{block}.ffn_down.weight", weights(EMBED, FFN))
    w.add_tensor("output_norm.weight", np.ones(EMBED, dtype=np.float32))
    w.add_tensor("output.weight", weights(len(tokens), EMBED))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tiny-gguf.py OUT.gguf")
    main(sys.argv[1])
