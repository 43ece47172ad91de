"""The built-in student's network: GPT-2 in plain torch, saved as a Hugging Face GPT-2.

Why not transformers' `GPT2LMHeadModel`: importing it costs about 6 s per stage process
(torch.distributed.tensor, torch._dynamo and scipy.optimize come with
`transformers.modeling_utils`), paid by `train`, `judge`, `evaluate` and `probe` in every
generation, and its per-call overhead (cache objects, mask building) was most of a
decoding step at this size. experiments/stage_starts.py and bench/train_speed.py measure both.

The layers, their parameter names and the math are GPT-2's as transformers writes it
(eager attention, tanh GELU, tied output head), so a checkpoint folder (`config.json`,
`model.safetensors`) is a GPT-2 checkpoint: `GPT2LMHeadModel.from_pretrained` loads it
and computes the same logits (tests/test_student.py checks that). Every matrix product of
the layers and the head goes through `_Product` (numpy's OpenBLAS, flywheel/kernels.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

CONFIG, WEIGHTS = "config.json", "model.safetensors"
ACTIVATIONS = ("gelu_pytorch_tanh", "gelu_new")  # the same tanh GELU; the first is one fused kernel


class _Product(torch.autograd.Function):
    """`x @ w` (and its two backward products) through numpy's OpenBLAS instead of torch's
    MKL. MKL chooses its matrix kernels by CPU vendor, so an Intel and an AMD CPU give
    different bytes; OpenBLAS with its kernels fixed (OPENBLAS_CORETYPE, flywheel/kernels.py)
    runs the same code on every AVX2 CPU, at about MKL's speed (MKL's own vendor-neutral
    mode runs at a third of it). docs/reproducibility.md has the measurements."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return torch.from_numpy(np.matmul(x.detach().numpy(), w.detach().numpy()))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, w = (t.detach().numpy() for t in ctx.saved_tensors)
        g = grad.detach().numpy()
        return (torch.from_numpy(g @ w.T) if ctx.needs_input_grad[0] else None,
                torch.from_numpy(x.T @ g) if ctx.needs_input_grad[1] else None)


def product(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """`x @ w` over x's last dimension, through `_Product`."""
    return _Product.apply(x.reshape(-1, x.shape[-1]), w).view(*x.shape[:-1], w.shape[1])


@dataclass
class Config:
    """The sizes and special ids; written as a GPT2Config's config.json."""
    vocab_size: int
    n_positions: int
    n_embd: int
    n_layer: int
    n_head: int
    eos_token_id: int
    pad_token_id: int
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02

    def hf(self) -> dict:
        """config.json as transformers' GPT2Config reads it (no dropout, eager attention's math)."""
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", **asdict(self),
                "activation_function": ACTIVATIONS[0], "attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0,
                "bos_token_id": None, "n_inner": None, "scale_attn_weights": True, "reorder_and_upcast_attn": False,
                "scale_attn_by_inverse_layer_idx": False, "add_cross_attention": False,
                "tie_word_embeddings": True, "dtype": "float32"}

    @classmethod
    def read(cls, path: Path) -> "Config":
        raw = json.loads(path.read_text())
        checks = {"model_type": ("gpt2",), "activation_function": ACTIVATIONS, "scale_attn_weights": (True,),
                  "reorder_and_upcast_attn": (False,), "scale_attn_by_inverse_layer_idx": (False,),
                  "add_cross_attention": (False,), "tie_word_embeddings": (True,), "n_inner": (None,)}
        for key, allowed in checks.items():
            if raw.get(key, allowed[0]) not in allowed:
                raise ValueError(f"{path}: {key} {raw[key]!r} is not what the built-in student runs ({allowed[0]!r})")
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


class Affine(nn.Module):
    """GPT-2's Conv1D: `x @ weight + bias`, weight stored (in, out)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return product(x, self.weight) + self.bias


class Attention(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.heads, self.width = cfg.n_head, cfg.n_embd // cfg.n_head
        self.c_attn = Affine(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = Affine(cfg.n_embd, cfg.n_embd)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None,
                past: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, tuple]:
        q, k, v = (t.view(*x.shape[:-1], self.heads, self.width).transpose(1, 2)
                   for t in self.c_attn(x).split(x.shape[-1], dim=2))
        if past is not None:
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        weights = torch.matmul(q, k.transpose(-1, -2)) * self.width ** -0.5
        if bias is not None:
            weights = weights + bias
        out = torch.matmul(F.softmax(weights, dim=-1), v).transpose(1, 2)
        return self.c_proj(out.reshape(*out.shape[:-2], -1)), (k, v)


class MLP(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.c_fc = Affine(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = Affine(4 * cfg.n_embd, cfg.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.mlp = MLP(cfg)

    def forward(self, x, bias, past):
        a, kv = self.attn(self.ln_1(x), bias, past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), kv


class Body(nn.Module):
    """GPT2Model's parameters, under the names transformers gives them (`transformer.*`)."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)


class GPT2(nn.Module):
    """Causal LM: token ids in, next-token logits out, with a key/value cache for decoding."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.config = cfg
        self.transformer = Body(cfg)

    def init_weights(self, seed: int) -> "GPT2":
        """GPT-2's initialisation (transformers' `_init_weights`): normal(0, 0.02) for
        products and embeddings, the residual projections scaled by 1/sqrt(2 n_layer)."""
        torch.manual_seed(seed)
        std = self.config.initializer_range
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                    p.fill_(1.0)
                elif name.endswith("bias"):
                    p.zero_()
                elif name.endswith("c_proj.weight"):
                    p.normal_(0.0, std / math.sqrt(2 * self.config.n_layer))
                else:
                    p.normal_(0.0, std)
        return self

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None, past: list | None = None,
                ) -> tuple[torch.Tensor, list]:
        """The last layer's states (batch, length, n_embd) and the layers' keys and values;
        `head` turns states into logits (only where they are needed: the answer tokens in
        training, the last token in decoding). `mask` (1 for a real token, 0 for right
        padding) hides padding from attention; `past` continues a sequence, one new token
        per row (greedy decoding: rows of one length, no padding)."""
        t = self.transformer
        start = 0 if past is None else past[0][0].shape[2]
        x = t.wte(ids) + t.wpe(torch.arange(start, start + ids.shape[1]))
        bias = None
        if ids.shape[1] > 1:  # a new token sees every earlier one; a prompt needs the causal mask
            allowed = torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool).tril()[None, None]
            if mask is not None:
                allowed = allowed & mask.bool()[:, None, None, :]
            bias = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
        cache = []
        for i, block in enumerate(t.h):
            x, kv = block(x, bias, None if past is None else past[i])
            cache.append(kv)
        return t.ln_f(x), cache

    def head(self, states: torch.Tensor) -> torch.Tensor:
        """Next-token logits: the states times the (tied) embedding."""
        return product(states, self.transformer.wte.weight.T)

    def save(self, folder: Path) -> None:
        """config.json and model.safetensors (the output head is the embedding, not stored)."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG).write_text(json.dumps(self.config.hf(), indent=2) + "\n")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS),
                  metadata={"format": "pt"})

    @classmethod
    def load(cls, folder: Path) -> "GPT2":
        """A saved network, from safetensors only (no pickled weights are ever loaded)."""
        if not (folder / WEIGHTS).is_file():
            raise OSError(f"{folder}: no {WEIGHTS}; the built-in student loads weights from safetensors only")
        model = cls(Config.read(folder / CONFIG))
        state = {k: v for k, v in load_file(str(folder / WEIGHTS)).items() if k != "lm_head.weight"}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{folder / WEIGHTS}: not the network config.json describes "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        return model.eval()
