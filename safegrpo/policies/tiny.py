"""Build small causal LMs locally (no hub access): a byte-level BPE tokenizer trained on a
corpus and a random-init Llama-architecture model, saved with ``save_pretrained`` so every
consumer loads them through the real ``from_pretrained`` path.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 2000):
    """Byte-level BPE trained on ``corpus`` -> PreTrainedTokenizerFast (pad/bos/eos/unk set)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(list(corpus), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>")


def build_tiny_lm(out_dir: str | Path, corpus: Iterable[str], *, vocab_size: int = 2000,
                  hidden: int = 128, layers: int = 2, heads: int = 4, max_positions: int = 512,
                  seed: int = 0) -> Path:
    """Write a random-init LlamaForCausalLM + tokenizer to ``out_dir``; returns the path."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tok = build_tokenizer(corpus, vocab_size)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                      num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=heads, max_position_embeddings=max_positions,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
