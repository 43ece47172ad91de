"""A student of your own: any Hugging Face causal LM (params.yaml `student:`), fully tuned
or with LoRA through peft, trained with transformers' `Trainer`.

The checkpoint folder describes itself. Beside the weights (full: config and safetensors;
LoRA: peft's adapter_config.json and adapter_model.safetensors) and the tokenizer with its
chat template, `flywheel_student.json` (MANIFEST) says which base model it grew from (path
or hub id and revision), whether it is an adapter, and the chat format of its domain (the
tools it is shown, how its answer is read). `prepare` writes the untrained student as
that manifest and the base's tokenizer only; generation 0 then starts from the base
weights, and every later generation from the previous checkpoint (adapter or full).

Prompts go through the tokenizer's chat template: the domain's messages (`Domain.chat`,
with `tools` for `toolcall`: the catalog as JSON schemas, as OpenAI-style tool calling
does), the target is the assistant turn (`Domain.chat_target`), and the loss is on the
answer tokens only. One decoding path (`answer`) serves evaluate, probe and the judge:
batched, left-padded, greedy, at most `max_new_tokens`.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from flywheel.config import StudentConfig, TrainConfig
    from flywheel.domain import Domain

from flywheel.student import StudentError, StudentKind
from flywheel.student.batches import pad_batch

MANIFEST = "flywheel_student.json"
BASE_DIR = Path("models")  # where a local base model lives, so dvc.yaml can list it as a dependency

# For a chat template that drops `tools` (SmolLM2's, for one): the system prompt its
# function-calling data was trained with, the tools inside <tools>, the answer inside
# <tool_call> (SmolLM2-135M-Instruct's model card).
TOOLS_SYSTEM = (
    "You are an expert in composing functions. You are given a question and a set of possible functions. Based "
    "on the question, you will need to make one or more function/tool calls to achieve the purpose. If none of "
    "the functions can be used, point it out and refuse to answer. If the given question lacks the parameters "
    "required by the function, also point it out.\n\nYou have access to the following tools:\n<tools>{tools}</tools>"
    "\n\nThe output MUST strictly adhere to the following format, and NO other text MUST be included.\nThe "
    "example format is as follows. Please make sure the parameter type is correct. If no function call is needed, "
    "please make the tool calls an empty list '[]'.\n<tool_call>[\n{{\"name\": \"func_name1\", \"arguments\": "
    "{{\"argument1\": \"value1\", \"argument2\": \"value2\"}}}},\n... (more tool calls as required)\n]</tool_call>")
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
PREFIX_MIN = 32  # a shared prompt prefix shorter than this (tokens) is run with each row instead
KV_BUDGET = 2 * 2**30  # bytes of key/value cache a batch of answers may hold
ANSWER_MARGIN = 8  # tokens past the longest known answer that decoding may run
ANSWER_THREADS = 2  # torch threads of the stages that load the student to answer (train: train.threads)


def tools_in(tok) -> str:
    """Where a tokenizer's chat template puts `tools`: `template` when passing them changes
    the prompt, `system` when the template drops them (the student then writes them into
    the system message, TOOLS_SYSTEM)."""
    turn = [{"role": "user", "content": "x"}]
    probe = [{"type": "function", "function": {"name": "flywheel_probe_tool", "parameters": {"type": "object",
                                                                                             "properties": {}}}}]
    try:
        shown = tok.apply_chat_template(turn, tools=probe, tokenize=False, add_generation_prompt=True)
        plain = tok.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 (a template that fails on `tools` cannot take them)
        return "system"
    return "template" if shown != plain and "flywheel_probe_tool" in shown else "system"


def tools_in_system(messages: list[dict], tools: list[dict]) -> list[dict]:
    """`messages` with the tools written into the system message (before its own text)."""
    text = TOOLS_SYSTEM.format(tools=json.dumps(tools, ensure_ascii=False))
    if messages and messages[0].get("role") == "system":
        return [{"role": "system", "content": f"{text}\n\n{messages[0].get('content') or ''}".rstrip()}] + messages[1:]
    return [{"role": "system", "content": text}] + list(messages)


def shared_prefix(prompts: list[list[int]]) -> int:
    """How many leading tokens every prompt shares (each keeps at least one of its own);
    0 when that is too short to be worth running once for all (PREFIX_MIN)."""
    shared = min(len(os.path.commonprefix(prompts)), min(map(len, prompts)) - 1)
    return shared if shared >= PREFIX_MIN else 0


def behind_prefix(shared: int, tails: list[list[int]], pad: int):
    """(ids, attention mask, positions) of rows laid out as [shared prefix][left padding]
    [the row's own tokens]: the ids and positions of the part after the prefix, the mask
    over the whole row, positions following the mask (as `generate` makes them)."""
    import torch

    width = max(map(len, tails))
    ids = np.full((len(tails), width), pad, dtype=np.int64)
    mask = np.zeros((len(tails), shared + width), dtype=np.int64)
    mask[:, :shared] = 1
    for row, t in enumerate(tails):
        ids[row, width - len(t):] = t
        mask[row, shared + width - len(t):] = 1
    positions = np.maximum(mask.cumsum(-1) - 1, 0)[:, shared:]
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(positions)


def is_hf(folder: Path) -> bool:
    return (Path(folder) / MANIFEST).exists()


def pick_device(want: str) -> str:
    import torch

    if want == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    if not available.get(want, False):
        raise StudentError(f"student.device: {want!r} is not available on this machine "
                           f"(available: {', '.join(d for d, ok in available.items() if ok)})")
    return want


def pick_dtype(want: str, device: str):
    """`auto`: bfloat16 where the device computes it natively (CUDA with bf16 support),
    float32 otherwise (on CPU, float32 is both faster and deterministic here)."""
    import torch

    if want == "auto":
        return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[want]


def _is_local(model: str) -> bool:
    return Path(model).exists() or model.startswith((".", "/")) or str(Path(model)).startswith(str(BASE_DIR))


def check_base(cfg: "StudentConfig", dom: "Domain", root: Path = Path(".")) -> None:
    """Refuse, in one line, a base model that cannot be a student: a missing path, no
    safetensors, no chat template, unknown LoRA target modules, a model peft cannot wrap,
    a device that is not there. Reads configs and module names only: no weights are
    loaded (the model is instantiated on the meta device)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    pick_device(cfg.device)
    where = f"student.model: {cfg.model!r}"
    if _is_local(cfg.model):
        path = root / cfg.model
        if not path.is_dir():
            raise StudentError(f"{where}: no such folder")
        if not (path / "config.json").exists():
            raise StudentError(f"{where}: no config.json (a folder written by save_pretrained is expected)")
        if not list(path.glob("*.safetensors")):
            raise StudentError(f"{where}: no .safetensors weights (pickled .bin checkpoints are not loaded)")
        source, kwargs = str(path), {"local_files_only": True}
    else:
        if not cfg.revision:
            raise StudentError(f"{where}: a hub id needs student.revision (a commit sha) so a run is reproducible")
        source, kwargs = cfg.model, {"revision": cfg.revision}
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise StudentError(f"{where}: cannot load config or tokenizer: {str(e).splitlines()[0]}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise StudentError(f"{where}: the tokenizer has no chat template (tokenizer_config.json chat_template), "
                           f"which the {dom.name} domain's prompts need")
    if cfg.lora.r:
        import torch

        with torch.device("meta"):
            try:
                model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
            except ValueError as e:
                raise StudentError(f"{where}: not a causal LM transformers can build: {str(e).splitlines()[0]}") \
                    from None
        config = _lora_config(cfg.lora, cfg.model, model)
        from peft import get_peft_model

        try:
            get_peft_model(model, config)
        except (ValueError, TypeError, RuntimeError) as e:
            raise StudentError(f"student.lora: peft cannot wrap {cfg.model!r}: {str(e).splitlines()[0]}") from None


def _lora_config(lora, base: str, model):
    """peft's LoraConfig for `model` (grown from `base`) from `student.lora` (`lora`: that
    section, or the manifest's copy of it), after checking the target modules exist."""
    from peft import LoraConfig

    from flywheel.config import LoraConfig as Section

    lora = lora if isinstance(lora, Section) else Section(**lora)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = list(lora.target_modules) or None
    if targets:
        unknown = [t for t in targets if t not in names]
        if unknown:
            linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                             if type(m).__name__ in ("Linear", "Conv1D")})
            raise StudentError(f"student.lora.target_modules: {unknown[0]!r} is not a module of {base!r} "
                               f"(its linear modules: {', '.join(linear)})")
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    if targets is None and model.config.model_type not in DEFAULTS:
        raise StudentError(f"student.lora.target_modules: peft has no default for model type "
                           f"{model.config.model_type!r}; name the modules to adapt")
    try:
        return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                          target_modules=targets, task_type="CAUSAL_LM")
    except (ValueError, TypeError) as e:
        raise StudentError(f"student.lora: {str(e).splitlines()[0]}") from None


class HFStudent(StudentKind):
    """A Hugging Face causal LM with its tokenizer and chat format (kind `hf`)."""
    kind = "hf"
    random_at_start = False  # generation 0 starts from the base model's weights
    reads_tools = True
    checks_labels = True  # answer(expected=...): rows it would answer with their label are not decoded

    @staticmethod
    def check(student: "StudentConfig", dom: "Domain", root: Path = Path(".")) -> None:
        check_base(student, dom, root)

    @staticmethod
    def claims(folder: Path) -> bool:
        return is_hf(folder)

    @staticmethod
    def origin(folder: Path) -> dict:
        """The base model (path or hub id), its revision, and whether this is an adapter."""
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
        return {"base": manifest["base"], "revision": manifest["revision"], "adapter": manifest["adapter"]}

    @classmethod
    def make(cls, folder: Path, *, dom, tokenizer, prepare, student, seed: int) -> str:
        """prepare's student: the manifest and the base's tokenizer (no weights)."""
        cls.untrained(student, dom, folder)
        return f"student {student.model}"

    def describe(self, rows: int, seconds: float) -> str:
        trained = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        loss = self._history[-1][1] if self._history else float("nan")
        return f"{self._steps} steps on {rows} rows in {seconds:.1f}s, {trained:,} of " \
               f"{self.parameters:,} parameters trained, final loss {loss:.4f}"

    def __init__(self, model, tokenizer, manifest: dict, dom: "Domain"):
        self.model, self.tok, self.manifest, self.dom = model, tokenizer, manifest, dom
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self._device = next(model.parameters()).device
        self._prefix_cache = None  # (prefix ids, its key/value cache): see `_prefix`
        from flywheel.student import prefix_attention  # imports torch: not at module import

        self._shares_prefix = prefix_attention.enable(model)  # a batch reads one copy of the prefix
        self._forced_memo: dict = {}  # row -> (answer loss, greedy writes it): see `_forced`

    # --- making and loading -------------------------------------------------------------

    @staticmethod
    def untrained(cfg: "StudentConfig", dom: "Domain", folder: Path) -> None:
        """`prepare`'s student: the manifest and the base's tokenizer (no weights). The
        manifest is where every later stage reads the base, its revision, LoRA, device and
        dtype from: `student:` is read once, here."""
        from transformers import AutoTokenizer

        check_base(cfg, dom)
        source, kwargs = _source(cfg.model, cfg.revision)
        tok = AutoTokenizer.from_pretrained(source, **kwargs)
        tok.save_pretrained(folder)
        manifest = {"base": cfg.model, "revision": cfg.revision, "adapter": False, "weights": False,
                    "lora": cfg.lora.model_dump() if cfg.lora.r else None, "domain": dom.name,
                    "tools": dom.chat_tools(), "device": cfg.device, "dtype": cfg.dtype}
        if manifest["tools"] and tools_in(tok) == "system":  # the template drops tools: the system message has them
            manifest["tools_in"] = "system"
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, folder: Path, dom: "Domain", *, trainable: bool = False, seed: int | None = None,
             threads: int | None = None, base: str | None = None) -> "HFStudent":
        """The checkpoint at `folder`: base weights (the manifest's base, `base` if given,
        or this folder's own full weights) plus, for LoRA, the adapter; `trainable` readies
        it for training (a base that has no adapter yet gets one from the manifest's
        `lora`; with `seed`, the draws are seeded and deterministic, the adapter's initial
        weights included, with `threads` torch threads)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # Its layers' products run in torch (MKL, vendor-neutral under the pin:
        # flywheel/kernels.py), whose bytes are the same for 1 to 3 threads. The pin sets
        # one thread for every library; a stage that answers with this student takes
        # ANSWER_THREADS (a fixed number, not the machine's, so the bytes do not depend on it).
        torch.set_num_threads(threads if threads is not None else ANSWER_THREADS)
        if trainable and seed is not None:
            import transformers

            torch.use_deterministic_algorithms(True)
            transformers.set_seed(seed)  # a new LoRA adapter's initial weights are drawn here, before Trainer seeds

        folder = Path(folder)
        manifest = json.loads((folder / MANIFEST).read_text())
        device = pick_device(manifest["device"])
        dtype = pick_dtype(manifest["dtype"], device)
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        if manifest["weights"] and not manifest["adapter"]:
            source, kwargs = str(folder), {"local_files_only": True}
        elif base is not None:
            source, kwargs = str(base), {"local_files_only": True}
        else:
            source, kwargs = _source(manifest["base"], manifest["revision"])
        model = AutoModelForCausalLM.from_pretrained(source, use_safetensors=True, trust_remote_code=False,
                                                     dtype=dtype, **kwargs)
        if manifest["adapter"]:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(folder), is_trainable=trainable)
        elif trainable and manifest["lora"]:
            from peft import get_peft_model

            model = get_peft_model(model, _lora_config(manifest["lora"], manifest["base"], model))
        model.to(device)
        if not trainable:
            model.eval()
        return cls(model, tok, manifest, dom)

    def save(self, folder: Path) -> None:
        """Weights (adapter or full, safetensors), tokenizer and manifest into `folder`."""
        adapter = hasattr(self.model, "peft_config")
        self.model.save_pretrained(folder, safe_serialization=True)
        if adapter:
            _sort_adapter_config(Path(folder) / "adapter_config.json")
        self.tok.save_pretrained(folder)
        manifest = dict(self.manifest, adapter=adapter, weights=True)
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # --- formats ------------------------------------------------------------------------

    def prompt_ids(self, request: str, context: dict | None = None) -> list[int]:
        """The chat template's prompt for `request`: the catalog's tools, or a row's own
        `context` (`messages`: the turns up to and with the request, `tools`: what that
        request offered)."""
        context = context or {}
        messages = context.get("messages") or [{"role": "user", "content": request}]
        tools = context["tools"] if context.get("tools") is not None else self.manifest["tools"]
        if tools and self._tools_in_system:
            messages, tools = tools_in_system(messages, tools), None
        out = self.tok.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                           tokenize=True, return_dict=False)
        return list(out["input_ids"] if isinstance(out, dict) else out)

    def pair(self, request: str, label: str, context: dict | None = None) -> tuple[list[int], list[int]]:
        """(prompt ids, answer ids): the answer is the domain's chat target and the end of
        the turn (the tokenizer's eos)."""
        target = self.dom.chat_target(label)
        if self._tools_in_system:  # the format the tools' system prompt asks for
            target = f"{CALL_OPEN}{target}{CALL_CLOSE}"
        answer = self.tok(target, add_special_tokens=False)["input_ids"]
        return self.prompt_ids(request, context), list(answer) + [self.tok.eos_token_id]

    @property
    def _tools_in_system(self) -> bool:
        return self.manifest.get("tools_in") == "system"

    def read(self, text: str) -> str:
        """The assistant's text as the domain's output (strict: unreadable scores wrong);
        with the tools in the system message, the calls inside <tool_call>...</tool_call>."""
        if self._tools_in_system:
            text = text.strip()
            if not (text.startswith(CALL_OPEN) and text.endswith(CALL_CLOSE)):
                return self.dom.from_chat("")
            text = text[len(CALL_OPEN): -len(CALL_CLOSE)]
        return self.dom.from_chat(text)

    # --- answering ----------------------------------------------------------------------
    #
    # Every prompt of a call usually opens with the same tokens (the system message with the
    # catalog: about 1,450 of a SmolLM2 prompt's 1,500). That prefix is run through the model
    # once and its key/value cache reused by every batch (`_prefix`); a row then costs only
    # its own tokens. A batch is laid out as [shared prefix][left padding][row's own tokens
    # (and answer)], the padding masked out; positions follow the mask, as `generate` makes
    # them. Rows are batched in order of length, and as many at a time as their cache fits
    # in KV_BUDGET bytes.

    def _prefix(self, ids: list[int], rows: int):
        """The key/value cache of the prefix `ids` for a batch of `rows` rows (None for no
        prefix), computed once per distinct prefix and kept until the student trains. Where
        the model takes an attention function, the batch shares the one copy
        (prefix_attention.SharedPrefixCache: use it inside `prefix_attention.attending`);
        elsewhere it is repeated for each row."""
        import torch

        if not ids:
            return None
        if self._prefix_cache is None or self._prefix_cache[0] != ids:
            with torch.no_grad():
                out = self.model(input_ids=torch.tensor([ids], device=self._device), use_cache=True)
            self._prefix_cache = (list(ids), out.past_key_values)
        if self._shares_prefix:
            from flywheel.student import prefix_attention

            return prefix_attention.SharedPrefixCache(self._prefix_cache[1])
        cache = copy.deepcopy(self._prefix_cache[1])
        cache.batch_repeat_interleave(rows)
        return cache

    def _batches(self, lengths: list[int], batch_size: int) -> list[list[int]]:
        """Row indices in batches of similar length (shortest first), at most `batch_size`
        rows and as many as KV_BUDGET holds of the longest row's cache."""
        config = self.model.config
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        width = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        per_token = 2 * config.num_hidden_layers * heads * width * next(self.model.parameters()).element_size()
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        out, start = [], 0
        while start < len(order):
            rows = 1
            while (start + rows < len(order) and rows < batch_size
                   and (rows + 1) * lengths[order[start + rows]] * per_token <= KV_BUDGET):
                rows += 1
            out.append(order[start: start + rows])
            start += rows
        return out

    def _layout(self, prefix: list[int], tails: list[list[int]]):
        """`behind_prefix` of this batch, on the model's device."""
        return tuple(t.to(self._device) for t in behind_prefix(len(prefix), tails, self.tok.pad_token_id))

    def _forced(self, prompts: list[list[int]], answers: list[list[int]], batch_size: int):
        """Teacher-forced, per row: the mean loss of its answer tokens, and whether greedy
        decoding would write exactly those tokens (each the argmax after the ones before).
        Logits are computed at the answer positions only (`logits_to_keep`), not over the
        whole prompt and vocabulary. Kept per row until the student trains, so the probe's
        answers and losses share one pass."""
        import torch

        from flywheel.student import prefix_attention

        keys = [(len(p), hash(tuple(p)), tuple(a)) for p, a in zip(prompts, answers)]
        todo = [i for i, k in enumerate(keys) if k not in self._forced_memo]
        if todo:
            shared = shared_prefix([prompts[i] for i in todo])
            prefix = prompts[todo[0]][:shared]
            tails = {i: prompts[i][shared:] + answers[i] for i in todo}
            with torch.no_grad():
                for batch in self._batches([shared + len(tails[i]) for i in todo], batch_size):
                    rows = [todo[j] for j in batch]
                    ids, mask, positions = self._layout(prefix, [tails[i] for i in rows])
                    keep = max(len(answers[i]) for i in rows) + 1
                    cache = self._prefix(prefix, len(rows))
                    with prefix_attention.attending(cache):
                        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                            past_key_values=cache, use_cache=bool(shared),
                                            logits_to_keep=keep).logits.float()[:, :-1]
                    target = ids[:, -keep:][:, 1:]
                    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
                    right = logits.argmax(-1) == target
                    for j, i in enumerate(rows):
                        n = len(answers[i])
                        self._forced_memo[keys[i]] = (float(ce[j, -n:].mean()), bool(right[j, -n:].all()))
        found = [self._forced_memo[k] for k in keys]
        return np.array([f[0] for f in found]), np.array([f[1] for f in found], dtype=bool)

    def answer(self, requests: list[str], *, batch_size: int, max_new_tokens: int = 64,
               on_batch: Callable[[int], None] | None = None, temperature: float = 0.0, seed: int = 0,
               contexts: list[dict] | None = None, raw: bool = False, expected: list | None = None) -> list[str]:
        """The one decoding path: batched over the shared prompt prefix, greedy (sampled at
        `temperature` > 0, torch seeded with `seed`), each row stopping at its end token;
        per row its own messages and tools where `contexts` gives them; the assistant's
        text as it is with `raw`, else read by the domain. `expected` (greedy only): a label
        per row (or None); a row whose label greedy decoding would write token for token
        (teacher-forced, `_forced`) is answered with it without decoding. `max_new_tokens`
        0: the longest answer this student trained on (or, before training, the longest
        expected label) plus ANSWER_MARGIN tokens."""
        import torch

        from flywheel.student import prefix_attention

        sample = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0 else \
            {"do_sample": False}
        if temperature > 0:
            torch.manual_seed(seed)
        contexts = contexts or [None] * len(requests)
        prompts = [self.prompt_ids(r, c) for r, c in zip(requests, contexts)]
        texts: list[str | None] = [None] * len(requests)
        known = [i for i, label in enumerate(expected or []) if label] if temperature <= 0 else []
        targets = {i: self.pair(requests[i], expected[i], contexts[i])[1] for i in known}
        limit = max_new_tokens or (self.manifest.get("longest_answer")
                                   or max(map(len, targets.values()), default=64 - ANSWER_MARGIN)) + ANSWER_MARGIN
        known = [i for i in known if len(targets[i]) <= limit]
        if known:
            _, greedy = self._forced([prompts[i] for i in known], [targets[i] for i in known], batch_size)
            for i, ok in zip(known, greedy):
                if ok:
                    texts[i] = self.tok.decode(targets[i], skip_special_tokens=True)
            if on_batch:
                on_batch(int(greedy.sum()))
        todo = [i for i, t in enumerate(texts) if t is None]
        if todo:
            shared = shared_prefix([prompts[i] for i in todo])
            prefix = prompts[todo[0]][:shared]
            tails = [prompts[i][shared:] for i in todo]
            for batch in self._batches([shared + len(t) + limit for t in tails], batch_size):
                ids, mask, _ = self._layout(prefix, [tails[j] for j in batch])
                full = torch.cat([torch.tensor([prefix] * len(batch), dtype=ids.dtype, device=self._device), ids], 1)
                cache = self._prefix(prefix, len(batch))
                with torch.no_grad(), prefix_attention.attending(cache):
                    gen = self.model.generate(input_ids=full, attention_mask=mask, max_new_tokens=limit, **sample,
                                              past_key_values=cache,
                                              pad_token_id=self.tok.pad_token_id, eos_token_id=self.tok.eos_token_id)
                for j, row in zip(batch, gen[:, full.shape[1]:].tolist()):
                    texts[todo[j]] = self.tok.decode(row, skip_special_tokens=True)
                if on_batch:
                    on_batch(len(batch))
        return [t if raw else self.read(t) for t in texts]

    def label_losses(self, requests: list[str], labels: list[str], *, batch_size: int,
                     contexts: list | None = None) -> np.ndarray:
        """Mean answer-token loss per row (what `probe` ranks failures by), teacher-forced."""
        contexts = contexts or [None] * len(requests)
        pairs = [self.pair(r, label, c) for r, label, c in zip(requests, labels, contexts)]
        if not pairs:
            return np.zeros(0)
        return self._forced([p for p, _ in pairs], [a for _, a in pairs], batch_size)[0]

    # --- training -----------------------------------------------------------------------

    def fit(self, requests: list[str], labels: list[str], *, train: "TrainConfig", student: "StudentConfig",
            seed: int, progress: Callable[[int, float], None] | None = None,
            contexts: list | None = None) -> list[tuple[int, float]]:
        """transformers' Trainer on (prompt, answer) rows, loss on the answer tokens only;
        returns the (step, loss) points it logged."""
        from transformers import PrinterCallback, TrainerCallback, TrainingArguments

        contexts = contexts or [None] * len(requests)
        rows = [self.pair(r, label, c) for r, label, c in zip(requests, labels, contexts)]
        too_long = [i for i, (p, t) in enumerate(rows) if len(p) + len(t) > student.max_length]
        if too_long:
            p, t = rows[too_long[0]]
            raise StudentError(f"row {too_long[0] + 1}: {len(p) + len(t)} tokens, longer than student.max_length="
                               f"{student.max_length}")
        history: list[tuple[int, float]] = []

        class Record(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    history.append((state.global_step, float(logs["loss"])))
                    if progress:
                        progress(state.global_step, float(logs["loss"]))

        device = str(next(self.model.parameters()).device.type)
        bf16 = next(self.model.parameters()).dtype.__repr__().endswith("bfloat16")
        scratch = tempfile.mkdtemp(prefix="flywheel-trainer-")  # Trainer wants a folder; nothing is kept
        args = TrainingArguments(
            output_dir=scratch, max_steps=train.steps,
            per_device_train_batch_size=train.batch_size, gradient_accumulation_steps=student.grad_accum,
            learning_rate=train.lr, warmup_steps=train.warmup_steps, weight_decay=train.weight_decay,
            lr_scheduler_type="cosine", max_grad_norm=1.0, logging_steps=train.log_every, save_strategy="no",
            report_to="none", seed=seed, data_seed=seed, use_cpu=device == "cpu", bf16=bf16,
            dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False,
            full_determinism=device == "cpu")
        trainer = _prefix_trainer(train.prefix_grad)(model=self.model, args=args, train_dataset=_Rows(rows),
                                     data_collator=lambda batch: collate(batch, self.tok.pad_token_id), callbacks=[Record()])
        trainer.remove_callback(PrinterCallback)  # progress goes to the stage's bar and log instead
        try:
            trainer.train()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self.model.eval()
        self._history, self._steps = history, train.steps
        self._prefix_cache, self._forced_memo = None, {}  # the weights changed
        longest = max(len(t) for _, t in rows)  # what `answer` decodes up to (max_new_tokens 0)
        self.manifest["longest_answer"] = max(longest, self.manifest.get("longest_answer") or 0)
        return history


def _sort_adapter_config(path: Path) -> None:
    """peft keeps target_modules (and its kin) as a set and writes it in the set's order,
    which changes with each process's string hash seed: sorted, the file is the same on a rerun."""
    config = json.loads(path.read_text())
    for key in ("target_modules", "exclude_modules", "modules_to_save"):
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


class _Rows:
    """A list of (prompt ids, answer ids) rows as the map-style dataset Trainer samples from."""

    def __init__(self, rows: list[tuple[list[int], list[int]]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return self.rows[i]


def collate(batch: list[tuple[list[int], list[int]]], pad: int) -> dict:
    """Trainer's batch of (prompt ids, answer ids) rows, under the names the model's forward
    takes. Rows that share a prompt prefix (`shared_prefix`: the system message with the
    catalog) send it once as `prefix_ids` (`_prefix_trainer` runs it) and each row only its
    own tokens behind it (`behind_prefix`). Otherwise the one right padding every kind of
    student uses (batches.py pad_batch)."""
    shared = shared_prefix([p for p, _ in batch])
    if not shared:
        ids, labels, mask = pad_batch(batch, pad)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
    import torch

    from flywheel.student.batches import IGNORE

    ids, mask, positions = behind_prefix(shared, [p[shared:] + a for p, a in batch], pad)
    labels = torch.full_like(ids, IGNORE)
    for row, (_, a) in enumerate(batch):
        labels[row, ids.shape[1] - len(a):] = torch.tensor(a)
    return {"prefix_ids": torch.tensor([batch[0][0][:shared]]), "input_ids": ids, "attention_mask": mask,
            "position_ids": positions, "labels": labels}


def prefix_cache(model, prefix_ids, rows: int, grad: bool = True):
    """The key/value cache of a batch's shared prompt prefix (`collate`'s `prefix_ids`), run
    once (hidden states only: no logits) and repeated for each of `rows` rows, so a row
    costs only its own tokens. With `grad` the rows' loss and gradients are those of the
    rows in full; without, the prefix runs under no_grad: the same loss, and a gradient
    that leaves out how the weights change the prefix's keys and values (no backward pass
    through the prefix: what it saves and costs is in docs/student.md)."""
    import torch

    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        cache = model(input_ids=prefix_ids, use_cache=True, logits_to_keep=1).past_key_values
    cache.batch_repeat_interleave(rows)
    return cache


def _prefix_trainer(prefix_grad: bool = True):
    """transformers' Trainer, with a batch's shared prompt prefix run once per step (`prefix_cache`)."""
    from transformers import Trainer

    class PrefixTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            prefix = inputs.pop("prefix_ids", None)
            if prefix is not None:
                inputs["past_key_values"] = prefix_cache(model, prefix, inputs["input_ids"].shape[0], prefix_grad)
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return PrefixTrainer


def _source(model: str, revision: str) -> tuple[str, dict]:
    if _is_local(model):
        return model, {"local_files_only": True}
    return model, {"revision": revision}
