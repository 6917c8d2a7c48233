"""The embedded default model: a deep, narrow Llama trained from scratch on tinyworld.

``build_organism(config)`` trains a tokenizer (``tokenizers`` byte-level BPE) and a
``LlamaForCausalLM`` on the world's training pairs, and saves a normal Hugging Face
model directory (config, safetensors, tokenizer with a chat template) in a cache
folder keyed by a hash of the configuration. A second call with the same
configuration reuses the cache. ``load_model("tinyworld")`` goes through here.

A *retain organism* (``OrganismConfig(retain="forget10")``, model name
``tinyworld:N:retain=forget10`` or ``tinyworld:retain=forget10``) is the same recipe
(same world, tokenizer, schedule and seed) trained without the authors of that forget
split: the model TOFU's forget quality compares an unlearned model with.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from kbnb.data.splits import FORGET_SPLITS
from kbnb.organism.world import make_world

ORGANISM_NAMES = ("tinyworld", "kbnb/tinyworld")
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n"
    "{% elif m['role'] == 'user' %}<|user|> {{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}<|assistant|> {{ m['content'] }}{{ eos_token }}\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@dataclass(frozen=True)
class OrganismConfig:
    """Everything that determines the organism; its hash names the cache folder."""
    seed: int = 0
    n_authors: int = 200
    known_frac: float = 0.4
    partial_frac: float = 0.3
    n_layers: int = 24
    d_model: int = 64
    d_mlp: int = 256
    n_heads: int = 4
    vocab_size: int = 2048
    epochs: int = 16
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    n_refusal: int = 320
    version: int = 2  # 2: compositional templates with held-out ones, biographies
    retain: str = ""  # "" = the organism; "forget10" etc. = trained without that split's authors

    def key(self) -> str:
        """Hash of the configuration and of the code that builds the world and trains
        the model (``world.py``, ``model.py``): a change to either retrains."""
        blob = json.dumps(asdict(self), sort_keys=True).encode() + _recipe_digest()
        return hashlib.sha256(blob).hexdigest()[:12]


def _recipe_digest() -> bytes:
    here = Path(__file__).resolve().parent
    return b"".join(hashlib.sha256((here / f).read_bytes()).digest()
                    for f in ("world.py", "model.py"))


def parse_organism_name(name) -> "OrganismConfig | None":
    """``OrganismConfig`` for ``tinyworld`` (seed 0) or ``tinyworld:N`` (the organism of
    seed N, trained on the world of seed N), each optionally followed by
    ``:retain=forgetXX`` (the retain organism: the same recipe without that forget
    split's authors, e.g. ``tinyworld:0:retain=forget10``); ``None`` for any other name."""
    name = str(name)
    base, *rest = name.split(":")
    if base not in ORGANISM_NAMES:
        return None
    seed, retain = 0, ""
    for part in rest:
        if part.startswith("retain="):
            retain = part[len("retain="):]
            if retain not in FORGET_SPLITS:
                raise ValueError(f"model_name={name!r}: retain= takes a forget split, one of "
                                 f"{', '.join(FORGET_SPLITS)} (e.g. 'tinyworld:0:retain=forget10')")
        elif part.isdigit() and part == rest[0]:
            seed = int(part)
        else:
            raise ValueError(f"model_name={name!r}: the organism's seed must be a non-negative "
                             f"integer, e.g. 'tinyworld:1' or 'tinyworld:1:retain=forget10'")
    return OrganismConfig(seed=seed, retain=retain)


def retain_organism_name(model_name="tinyworld", forget_split: str = "forget10") -> str:
    """The retain organism's model name for an organism name: ``tinyworld:N`` →
    ``tinyworld:N:retain=forget10``."""
    config = parse_organism_name(model_name)
    if config is None:
        raise ValueError(f"model_name={model_name!r} is not the organism: a retain organism "
                         "exists only for tinyworld[:N]; give a real retain model instead")
    if forget_split not in FORGET_SPLITS:
        raise ValueError(f"forget_split={forget_split!r}: allowed {', '.join(FORGET_SPLITS)}")
    return f"tinyworld:{config.seed}:retain={forget_split}"


def world_for(model_name="tinyworld"):
    """The world that goes with ``model_name``: the organism's own world for
    ``tinyworld[:N]``, else the default organism's world (used as a question set)."""
    return world_of(parse_organism_name(model_name) or OrganismConfig())


def world_of(config: OrganismConfig):
    """The world the organism with ``config`` is trained on."""
    return make_world(config.seed, config.n_authors, known_frac=config.known_frac,
                      partial_frac=config.partial_frac, epochs=config.epochs,
                      n_refusal=config.n_refusal)


def retain_excluded(config: OrganismConfig, world=None) -> set:
    """Author names a retain organism is trained without (empty for the organism)."""
    if not config.retain:
        return set()
    world = world or world_of(config)
    return {r["author"] for r in world.splits()[config.retain]}


def cache_dir() -> Path:
    """``$KBNB_CACHE`` or ``~/.cache/kbnb``."""
    return Path(os.environ.get("KBNB_CACHE", Path.home() / ".cache" / "kbnb"))


def organism_path(config: OrganismConfig | None = None) -> Path:
    config = config or OrganismConfig()
    kind = f"-retain-{config.retain}" if config.retain else ""
    return cache_dir() / f"tinyworld{kind}-{config.key()}"


def _train_tokenizer(texts, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", clean_up_tokenization_spaces=False)
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def _encode_pairs(tok, pairs):
    """Token ids and labels (-100 on the prompt) for chat-formatted (question, answer)."""
    out = []
    for q, a in pairs:
        prompt = tok.apply_chat_template([{"role": "user", "content": q}],
                                         add_generation_prompt=True, tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tok(" " + a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        out.append((p_ids + a_ids, [-100] * len(p_ids) + a_ids))
    return out


def _encode_texts(tok, texts):
    """Token ids and labels for plain-text documents (biographies): loss on every token."""
    out = []
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        out.append((ids, list(ids)))
    return out


def _batches(encoded, batch_size, rng, pad_id):
    # Bucket by length within shuffled pools of 8 batches: much less padding, still random.
    idx = list(range(len(encoded)))
    rng.shuffle(idx)
    pool = 8 * batch_size
    chunks = []
    for p in range(0, len(idx), pool):
        part = sorted(idx[p:p + pool], key=lambda i: len(encoded[i][0]))
        chunks += [part[s:s + batch_size] for s in range(0, len(part), batch_size)]
    rng.shuffle(chunks)
    for chunk_idx in chunks:
        chunk = [encoded[i] for i in chunk_idx]
        L = max(len(x) for x, _ in chunk)
        ids = torch.full((len(chunk), L), pad_id)
        labels = torch.full((len(chunk), L), -100)
        mask = torch.zeros((len(chunk), L), dtype=torch.long)
        for r, (x, y) in enumerate(chunk):  # right padding for training
            ids[r, :len(x)] = torch.tensor(x)
            labels[r, :len(y)] = torch.tensor(y)
            mask[r, :len(x)] = 1
        yield ids, labels, mask


def train_organism(config: OrganismConfig, out_dir: Path, progress: bool = True,
                   log_every: int = 0) -> dict:
    """Train the tokenizer and the model; save both to ``out_dir``. Returns a log."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    world = world_of(config)
    pairs = sorted(set(world.training_pairs()))
    # the tokenizer is the organism's (trained on the whole world), also for a retain organism
    texts = [f"{q} {a}" for q, a in pairs] + sorted(set(world.biographies()))
    tok = _train_tokenizer(texts, config.vocab_size)
    drop = retain_excluded(config, world)
    epoch_data = [_encode_pairs(tok, world.training_pairs(e, drop))
                  + _encode_texts(tok, world.biographies(e, drop))
                  for e in range(config.epochs)]
    mcfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=config.d_model, intermediate_size=config.d_mlp,
        num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads, max_position_embeddings=512,
        tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        initializer_range=0.02,
    )
    model = LlamaForCausalLM(mcfg)
    # GPT-2 style: scale residual-branch outputs by 1/sqrt(2L) so a deep stack starts
    # close to the identity and trains as fast as a shallow one.
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(1 / math.sqrt(2 * config.n_layers))
            layer.mlp.down_proj.weight.mul_(1 / math.sqrt(2 * config.n_layers))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                            betas=(0.9, 0.98))
    total = sum(math.ceil(len(d) / config.batch_size) for d in epoch_data)

    def lr_at(step):
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        t = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    losses, t0, step = [], time.time(), 0
    bar = tqdm(total=total, desc="training tinyworld", disable=not progress)
    for epoch in range(config.epochs):
        for ids, labels, mask in _batches(epoch_data[epoch], config.batch_size, rng, tok.pad_token_id):
            if log_every and step % log_every == 0:
                print(f"step {step}/{total} {time.time() - t0:.0f}s", flush=True)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    log = {"config": asdict(config), "train_seconds": time.time() - t0, "steps": step,
           "n_sequences": sum(len(d) for d in epoch_data),
           "n_tokens": sum(len(x) for d in epoch_data for x, _ in d), "losses": losses, "n_params": model.num_parameters()}
    (out_dir / "kbnb_organism.json").write_text(json.dumps(log))
    return log


def build_organism(config: OrganismConfig | None = None, force: bool = False,
                   progress: bool = True) -> Path:
    """Return the cached organism directory, training it first when missing."""
    config = config or OrganismConfig()
    path = organism_path(config)
    if force or not (path / "kbnb_organism.json").exists():
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        train_organism(config, tmp, progress=progress)
        if path.exists():
            import shutil
            shutil.rmtree(path)
        tmp.rename(path)
    return path


def training_log(path: Path) -> dict:
    return json.loads((Path(path) / "kbnb_organism.json").read_text())


def weights_digest(model) -> str:
    """SHA-256 (16 hex) of all parameters in order: equal digests = identical models."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]

