"""Attention over a prompt prefix every row of a batch shares, held once.

With the catalog in the system message, about 1,490 of a SmolLM2 prompt's 1,510 tokens
are the same in every row. The usual cache holds a copy of the prefix's keys and values
per row and reads all of them at every new token (16 rows: about 1 GB a token).
`SharedPrefixCache` holds the prefix once ([1, kv heads, prefix, head dim] per layer)
and each row's own tokens after it. At each new token, the attention function registered
here (transformers' AttentionInterface, `NAME`) scores the batch's queries against the
one prefix with one product per key/value head, against each row's own keys as usual,
and takes one softmax over both: the same attention, without the copies. A pass over
many tokens at once (the rows' own prompt tokens, a teacher-forced answer) joins the
prefix to each row's keys once and runs SDPA. Outside `attending(cache)` it is
transformers' SDPA attention, unchanged. What it gives: docs/student.md.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "flywheel_shared_prefix"
_ACTIVE: ContextVar["SharedPrefixCache | None"] = ContextVar("shared_prefix_cache", default=None)


class _PrefixLayer(DynamicLayer):
    """One layer: the shared prefix's keys/values, then each row's own (grown as decoding goes)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.prefix = (keys, values)

    def get_seq_length(self) -> int:
        return self.prefix[0].shape[-2] + super().get_seq_length()


class SharedPrefixCache(Cache):
    """A prefix's cache (`prefix`, computed for one row) shared by every row of a batch."""

    def __init__(self, prefix: Cache):
        super().__init__(layers=[_PrefixLayer(layer.keys, layer.values) for layer in prefix.layers])


@contextlib.contextmanager
def attending(cache):
    """Within it, the model's attention reads the shared prefix of `cache` (a
    SharedPrefixCache; anything else: no change)."""
    token = _ACTIVE.set(cache if isinstance(cache, SharedPrefixCache) else None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    cache = _ACTIVE.get()
    if cache is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    prefix_k, prefix_v = cache.layers[module.layer_idx].prefix  # [1, kv heads, P, d]
    rows, heads, q, width = query.shape
    if q > 1:  # a pass over many tokens (a batch's own prompt tokens, a teacher-forced answer): the prefix's
        # keys joined once to each row's and SDPA, which does not hold the [q, P] scores (measured: the
        # scores below made the probe's loss pass 1.1 s a row against 0.87)
        return sdpa_attention_forward(module, query, torch.cat([prefix_k.expand(rows, -1, -1, -1), key], 2),
                                      torch.cat([prefix_v.expand(rows, -1, -1, -1), value], 2), attention_mask,
                                      scaling=scaling, dropout=dropout, **kwargs)
    kv_heads, shared = prefix_k.shape[1], prefix_k.shape[2]
    grouped = query.reshape(rows, kv_heads, heads // kv_heads, q, width)
    scale = scaling if scaling is not None else width ** -0.5
    scores = torch.cat([torch.einsum("bkgqd,kpd->bkgqp", grouped, prefix_k[0]),
                        torch.einsum("bkgqd,bktd->bkgqt", grouped, key)], -1) * scale
    if attention_mask is not None:  # [rows, 1, q, P + own]: True (or 0) where a query may look
        mask = attention_mask[:, :, None]
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = torch.softmax(scores, -1, dtype=torch.float32).to(query.dtype)
    out = (torch.einsum("bkgqp,kpd->bkgqd", weights[..., :shared], prefix_v[0])
           + torch.einsum("bkgqt,bktd->bkgqd", weights[..., shared:], value))
    return out.reshape(rows, heads, q, width).transpose(1, 2).contiguous(), None


def _mask(*args, **kwargs):
    """SDPA's mask; under a shared prefix always built (never left to `is_causal`), since
    the prefix's keys are not in the tensor the causal shortcut would mask."""
    if _ACTIVE.get() is not None:
        kwargs["allow_is_causal_skip"] = False
    return sdpa_mask(*args, **kwargs)


AttentionInterface.register(NAME, _attention)
AttentionMaskInterface.register(NAME, _mask)


def enable(model) -> bool:
    """Switch `model` (a transformers model, or a peft model around one) to this attention
    where its architecture takes an attention function; False where it does not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "_can_set_attn_implementation", lambda: False)():
        return False
    base.set_attn_implementation(NAME)
    return base.config._attn_implementation == NAME
