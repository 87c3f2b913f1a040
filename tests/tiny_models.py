"""Tiny random causal LMs built from configs, saved with an in-process tokenizer (no network)."""
from __future__ import annotations

import re
from pathlib import Path

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")

#: arch name -> (config class, kwargs); 3 layers, hidden 32, vocab 512.
ARCHS: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", {}),
    "mistral": ("MistralConfig", {}),
    "qwen2": ("Qwen2Config", {}),
    "qwen3": ("Qwen3Config", {"head_dim": 16}),
    "gemma2": ("Gemma2Config", {"head_dim": 16}),
    "gemma3": ("Gemma3TextConfig", {"head_dim": 16}),
    "gpt_neox": ("GPTNeoXConfig", {}),
    "gpt2": ("GPT2Config", {}),
    "phi3": ("Phi3Config", {}),
}
VOCAB = 512


def build_tokenizer(directory: Path) -> None:
    """A word-level tokenizer over a fixed vocabulary of common words (unknown words -> [UNK])."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ("the a and of to in it was she he i my her his at on for with that had not but they you "
             "as be by from this is are were we our me him them so then when what there out up down one "
             "two day time back door hand eyes face home work dog train rain letter phone car table "
             "window floor voice head room night morning friend mother father child school doctor").split()
    specials = ["[PAD]", "[UNK]", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"]
    punct = list(".,!?;:'\"-()")
    vocab = {tok: i for i, tok in enumerate(specials + punct + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   bos_token="<s>", eos_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(directory)
    assert len(vocab) < VOCAB


def build_model(arch: str, directory: Path, *, layers: int = 3, seed: int = 0) -> Path:
    """Save a tiny random model of ``arch`` and the tokenizer to ``directory``."""
    import torch
    import transformers

    config_name, extra = ARCHS[arch]
    config_cls = getattr(transformers, config_name)
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                  bos_token_id=2, eos_token_id=3, pad_token_id=0)
    if arch == "gpt2":
        common = dict(vocab_size=VOCAB, n_embd=32, n_layer=layers, n_head=2, n_positions=512,
                      bos_token_id=2, eos_token_id=3)
    if arch == "gpt_neox":
        common.pop("num_key_value_heads")
    config = config_cls(**common, **extra)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    # random init is tiny for some archs; scale so activations are far from zero
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(4.0)
    model.eval().save_pretrained(directory)
    build_tokenizer(directory)
    return directory


def words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())
