"""The one place where kbnb turns text into model inputs, for any causal LM.

* :func:`encode_prompt` tokenizes a prompt with the tokenizer's BOS token exactly
  once: added when the tokenizer itself would add one (``tok(text)`` starts with BOS,
  as Llama-2, Mistral and OpenLLaMA's do) unless the text already starts with the BOS
  text (a chat template that writes ``<s>`` / ``<|begin_of_text|>`` itself).
  Tokenizers without a BOS post-processor (GPT-2, Qwen, the organism) are unchanged.
* :func:`encode_batch` builds left-padded batches of prompts (and optionally
  completions, with labels on the completion tokens only) together with
  ``position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)``, so that models
  with absolute position embeddings (GPT-2, OPT, GPT-J...) see the same positions in a
  padded batch as one prompt at a time. :func:`model_inputs` gives the keyword
  arguments for a forward pass (``position_ids`` only where the model takes them).
* :func:`completion_joiner` / :func:`join_completion` decide whether a completion
  follows its prompt after a space: what the chat template writes between the
  generation prompt and the assistant's text (``" "`` after the organism's
  ``<|assistant|>``, ``""`` after ``"<|im_start|>assistant\\n"``); ``" "`` after a
  plain ``Question: ...\\nAnswer:`` prompt; never a space after a prompt that already
  ends in whitespace.
"""
from __future__ import annotations

import inspect
import weakref

import torch

_BOS_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_JOIN_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_DUMMY = "KBNBDUMMYANSWER"


def _cached(cache, tok, fn):
    try:
        if tok in cache:
            return cache[tok]
    except TypeError:  # not weak-referenceable: no cache
        return fn()
    value = fn()
    try:
        cache[tok] = value
    except TypeError:
        pass
    return value


# ---- BOS ------------------------------------------------------------------------------
def adds_bos(tok) -> bool:
    """Whether ``tok(text)`` (with special tokens) starts with the BOS token, i.e. the
    model was trained with BOS first (Llama-2, Mistral...)."""
    def probe():
        bos = getattr(tok, "bos_token_id", None)
        if bos is None:
            return False
        with_sp = tok("a", add_special_tokens=True)["input_ids"]
        without = tok("a", add_special_tokens=False)["input_ids"]
        return bool(with_sp) and with_sp[0] == bos and (not without or without[0] != bos)
    return _cached(_BOS_CACHE, tok, probe)


def encode_text(tok, text: str) -> list[int]:
    """Token ids of a piece of text inside a sequence (no special tokens added): for
    completions and continuations."""
    return list(tok(text, add_special_tokens=False)["input_ids"])


def encode_prompt(tok, text: str) -> list[int]:
    """Token ids of a prompt that starts a sequence, with BOS exactly once (see the
    module docstring)."""
    ids = encode_text(tok, text)
    if adds_bos(tok):
        bos_id, bos_text = tok.bos_token_id, tok.bos_token or ""
        if not (ids and ids[0] == bos_id) and not (bos_text and text.startswith(bos_text)):
            ids = [bos_id] + ids
    return ids


# ---- completion joining -----------------------------------------------------------------
def _template_probe(tok):
    """``(joiner, generation-prompt suffix)`` read from the chat template."""
    def probe():
        if not getattr(tok, "chat_template", None):
            return " ", None
        user = [{"role": "user", "content": "Hi"}]
        try:
            gen = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
        except Exception:
            return " ", None
        suffix = gen[gen.rindex("Hi") + 2:].lstrip() if "Hi" in gen else None
        try:
            full = tok.apply_chat_template(user + [{"role": "assistant", "content": _DUMMY}],
                                           tokenize=False)
        except Exception:  # templates that refuse an assistant turn: judge by the prompt
            full = None
        if full is not None and _DUMMY in full:
            k = 0
            while k < min(len(gen), len(full)) and gen[k] == full[k]:
                k += 1
            d = full.index(_DUMMY)
            between = full[k:d] if d >= k else ""
            if k == len(gen) and between in ("", " "):
                return between, suffix
            # the template writes more than a space (e.g. empty think tags): a space only
            # if neither the generation prompt nor that text ends in whitespace
            return ("" if gen[-1:].isspace() or between[-1:].isspace() else " "), suffix
        return ("" if gen[-1:].isspace() else " "), suffix
    return _cached(_JOIN_CACHE, tok, probe)


def completion_joiner(tok) -> str:
    """What goes between a chat prompt (ending in the generation prompt) and the
    assistant's text: ``" "`` or ``""``, read from the chat template by rendering a
    dummy assistant turn after the generation prompt. ``" "`` when the tokenizer has
    no chat template (:func:`format_prompt` then writes the plain
    ``Question: ...\nAnswer:`` prompt)."""
    return _template_probe(tok)[0]


def completion_sep(tok, prompt: str) -> str:
    """The separator :func:`join_completion` puts between ``prompt`` and an answer:
    ``""`` after whitespace; :func:`completion_joiner` after a prompt that ends with the
    chat template's generation prompt; ``" "`` otherwise (e.g. after ``Answer:``)."""
    if not prompt or prompt[-1:].isspace():
        return ""
    joiner, suffix = _template_probe(tok)
    if suffix and prompt.endswith(suffix):
        return joiner
    return " "


def join_completion(tok, prompt: str, answer: str) -> str:
    """The completion text that follows ``prompt`` when the model says ``answer``
    (stripped): :func:`completion_sep` + answer."""
    return completion_sep(tok, prompt) + answer.strip()


# ---- prompts ----------------------------------------------------------------------------
def format_prompt(tok, question: str, system: str | None = None, answer_prefix: str = "") -> str:
    """A user turn ready for generation: the tokenizer's chat template when it has one,
    a plain ``Question: ...\\nAnswer:`` template otherwise. ``answer_prefix`` is text the
    assistant has already said."""
    if getattr(tok, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + \
                   [{"role": "user", "content": question}]
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    else:
        text = (f"{system}\n\n" if system else "") + f"Question: {question}\nAnswer:"
    return text + answer_prefix


def format_example(tok, question: str, answer: str, system: str | None = None) -> tuple[str, str]:
    """(prompt, completion) for training: the completion is the answer after the
    separator the chat template uses (:func:`kbnb.lm.encoding.join_completion`: a space
    after the organism's ``<|assistant|>`` or a plain ``Answer:``, none after a
    template ending in a newline) and ends with the EOS token."""
    prompt = format_prompt(tok, question, system)
    return prompt, join_completion(tok, prompt, answer) + (tok.eos_token or "")


# ---- batches --------------------------------------------------------------------------
def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """``(mask.cumsum(-1) - 1).clamp(min=0)``: 0, 1, 2... from each row's first real
    token (left padding gets 0)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def encode_batch(tok, prompts, completions=None, device="cpu", pad_id=None) -> dict:
    """Left-padded batch: ``input_ids``, ``attention_mask``, ``position_ids``
    (``[B, T]`` each) and, with ``completions``, ``labels`` (-100 except on the
    completion tokens). Prompts get BOS once (:func:`encode_prompt`); a completion is
    tokenized on its own (:func:`encode_text`) and appended, so its tokens are those
    the model would emit after the prompt."""
    prompts = list(prompts)
    if completions is not None and len(completions) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    rows = []
    for i, p in enumerate(prompts):
        p_ids = encode_prompt(tok, p)
        r_ids = encode_text(tok, completions[i]) if completions is not None else []
        rows.append((p_ids + r_ids, [-100] * len(p_ids) + r_ids))
    if pad_id is None:
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    T = max([len(x) for x, _ in rows], default=0)
    B = len(rows)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        if x:
            ids[i, T - len(x):] = torch.tensor(x)
            labels[i, T - len(y):] = torch.tensor(y)
            mask[i, T - len(x):] = 1
    out = {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids_from_mask(mask)}
    if completions is not None:
        out["labels"] = labels
    return {k: v.to(device) for k, v in out.items()}


# ---- models ---------------------------------------------------------------------------
def _base(model):
    get = getattr(model, "get_base_model", None)  # peft
    return get() if callable(get) else getattr(model, "module", model)  # DDP


def accepts_position_ids(model) -> bool:
    """Whether the model's forward takes ``position_ids`` (not ALiBi models such as
    Bloom and MPT, which derive positions from the attention mask)."""
    try:
        return "position_ids" in inspect.signature(_base(model).forward).parameters
    except (TypeError, ValueError):
        return False


def cache_argument(model) -> str:
    """The name under which the model's forward takes a key/value cache: ``past_key_values``
    (transformers < 5.24 and most remote code) or ``cache`` (its name from 5.24 on, where
    the old name still works but warns)."""
    try:
        params = inspect.signature(_base(model).forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "past_key_values" if "past_key_values" in params or "cache" not in params \
        else "cache"


def last_logits_only(model) -> dict:
    """``{"logits_to_keep": 1}`` (or ``num_logits_to_keep``) when the model's forward
    takes it, so that the output head runs on the last position only instead of
    ``[B, T, vocab]`` logits (49,152 floats per position on SmolLM2); ``{}`` otherwise
    (the caller then slices the last row)."""
    base = _base(model)
    try:
        params = inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return {}
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in params:
            return {name: 1}
    return {}


def input_device(model) -> torch.device:
    """Where a model's inputs go: the device of its input embeddings (the first block's
    device with ``device_map``), else ``model.device``."""
    try:
        emb = model.get_input_embeddings()
        if emb is not None and getattr(emb, "weight", None) is not None:
            dev = emb.weight.device
            if dev.type != "meta":
                return dev
    except (AttributeError, NotImplementedError):
        pass
    return getattr(model, "device", None) or next(model.parameters()).device


def model_inputs(model, batch: dict, labels: bool = False) -> dict:
    """Keyword arguments for ``model(**...)`` / ``model.generate(**...)`` from an
    :func:`encode_batch` batch: moved to :func:`input_device`, ``position_ids`` kept
    only if the model takes them, ``labels`` only when asked."""
    dev = input_device(model)
    keep = {"input_ids", "attention_mask"}
    if accepts_position_ids(model):
        keep.add("position_ids")
    if labels:
        keep.add("labels")
    return {k: v.to(dev) for k, v in batch.items() if k in keep}
