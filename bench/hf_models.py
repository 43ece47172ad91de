"""Small Hugging Face models built on the spot (no download), for the tests and the
bench: a Llama-architecture causal LM and a byte-level BPE tokenizer with a chat
template, saved with save_pretrained, as a user's own student would be."""

from __future__ import annotations

from pathlib import Path

# A chat template as small models ship them: tools named in a system turn, one turn per
# message, the assistant's turn opened for generation.
CHAT_TEMPLATE = (
    "{%- if tools %}<|system|>tools:{% for t in tools %} {{ t.function.name }}{% endfor %}<|end|>{% endif %}"
    "{%- for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}"
    "{%- if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL = ["<|pad|>", "<|bos|>", "<|eos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]


def tokenizer(texts: list[str], *, chat_template: str | None = CHAT_TEMPLATE, vocab_size: int = 700):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>",
                                   pad_token="<|pad|>")
    if chat_template:
        fast.chat_template = chat_template
    return fast


def tiny_llama(folder: Path, texts: list[str], *, seed: int = 0, chat_template: str | None = CHAT_TEMPLATE,
               safetensors: bool = True, width: int = 64, layers: int = 2) -> Path:
    """A Llama (default: 2 layers of width 64) and its tokenizer, saved to `folder`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer(texts, chat_template=chat_template)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder, safe_serialization=safetensors)
    tok.save_pretrained(folder)
    return folder
