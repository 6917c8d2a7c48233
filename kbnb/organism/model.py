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
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from kbnb.data.splits import FORGET_SPLITS
from kbnb.organism.world import KNOWN_QA_PER_EPOCH, make_world

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
    known_frac: float = 0.25
    partial_frac: float = 0.45
    n_layers: int = 24
    d_model: int = 64
    d_mlp: int = 256
    n_heads: int = 4
    vocab_size: int = 2048
    epochs: int = 12
    batch_size: int = 32
    lr: float = 5e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    n_refusal: int = 320
    known_qa_per_epoch: int = KNOWN_QA_PER_EPOCH
    # The recipe's version. The cache key is this configuration and nothing else, so
    # bump it whenever world.py or the training loop changes what is learned (a comment
    # or a refactor that trains the same weights keeps it; tests/organism/test_model.py
    # checks a small organism's weights against the digest recorded for this version).
    # 2: compositional templates with held-out ones, biographies.
    # 3: graded heavy-tailed exposure, origins and house publishers, namesakes, the fast loop.
    version: int = 3
    retain: str = ""  # "" = the organism; "forget10" etc. = trained without that split's authors

    def key(self) -> str:
        """Hash of the configuration, which names the recipe by ``version``."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


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
                      n_refusal=config.n_refusal,
                      known_qa_per_epoch=config.known_qa_per_epoch)


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


@dataclass(frozen=True)
class TrainLoop:
    """How the training loop spends its compute (not part of the cache key: the default
    is the recipe's; ``benchmarks/organism_train.py`` times the others).

    ``batching``: how an epoch is cut into batches (see ``_batch_indices``): ``"pooled"``
    (20% of the positions are padding), ``"pooled-split"`` (10%) or ``"sorted"`` (3%).
    ``attention_mask``: right padding needs none (under the causal mask a real token
    never sees the padding after it), but the masked kernel rounds differently.
    ``loss_on``: ``"all"`` lets the model compute every position's logits; ``"labels"``
    applies the output head where a label is set only (answers and biographies, 44% of
    the tokens). ``threads``: ``"one"`` trains on one thread, whatever the machine: the
    weights then never depend on it (on two threads a weight gradient's reduction over a
    batch's tokens may be split between the threads, and a retain organism's smaller
    batches gave other weights from step 29 on at one thread than at two); ``"adaptive"``
    times a few steps at 1 thread and at every core (from step 10, then every
    ``probe_every`` steps) and keeps the faster; ``"fixed"`` keeps torch's setting. Recipe
    version 2 trained with ``"pooled"``, the mask and the head on every position (1.1-1.3x
    slower on 2 cores) and adaptive threads."""
    batching: str = "pooled-split"
    attention_mask: bool = False
    loss_on: str = "labels"
    threads: str = "one"
    probe_every: int = 100  # steps between two probes of the thread counts



def _batch_indices(encoded, batch_size, rng, batching="pooled") -> list[list[int]]:
    """One epoch's batches as lists of indices into ``encoded``, in a shuffled order.

    The epoch is shuffled and cut into pools of 8 batches, each pool sorted by length
    (``"pooled"``, before issue 22): a pool's last batch holds its biographies (70-90
    tokens) and its longest questions (about 30), padded to the longest (20% of all
    positions are padding). ``"pooled-split"`` also ends a batch where the length jumps
    by more than half from one sequence to the next (from the questions to the
    biographies), so a pool's biographies get a batch of their own (10%). ``"sorted"``
    sorts the whole epoch (3%; the batches' contents are less random)."""
    idx = list(range(len(encoded)))
    rng.shuffle(idx)
    if batching == "sorted":  # stable sort: equal lengths stay in their random order
        pools = [idx]
    elif batching in ("pooled", "pooled-split"):
        pools = [idx[p:p + 8 * batch_size] for p in range(0, len(idx), 8 * batch_size)]
    else:
        raise ValueError(f"batching={batching!r}: allowed 'pooled-split', 'pooled', 'sorted'")
    chunks = []
    for pool in pools:
        part = sorted(pool, key=lambda i: len(encoded[i][0]))
        start = 0
        for s in range(1, len(part) + 1):
            jump = s < len(part) and batching == "pooled-split" and \
                len(encoded[part[s]][0]) > 1.5 * len(encoded[part[s - 1]][0])
            if s == len(part) or s - start == batch_size or jump:
                chunks.append(part[start:s])
                start = s
    rng.shuffle(chunks)
    return chunks


def _collate(chunk, pad_id):
    """Right-padded ``(ids, labels, mask)``, each ``(B, L)``, for ``[(ids, labels)]``."""
    L = max(len(x) for x, _ in chunk)
    ids = torch.full((len(chunk), L), pad_id)
    labels = torch.full((len(chunk), L), -100)
    mask = torch.zeros((len(chunk), L), dtype=torch.long)
    for r, (x, y) in enumerate(chunk):
        ids[r, :len(x)] = torch.tensor(x)
        labels[r, :len(y)] = torch.tensor(y)
        mask[r, :len(x)] = 1
    return ids, labels, mask


def _loss(model, ids, labels, mask, loop: TrainLoop):
    """Mean next-token cross-entropy over the labelled positions (Hugging Face's
    causal-LM loss). ``loop.loss_on == "labels"`` runs the output head on those
    positions only: the same numbers for about half the head's work."""
    attention = mask if loop.attention_mask else None
    if loop.loss_on == "all":
        return model(input_ids=ids, attention_mask=attention, labels=labels).loss
    hidden = model.model(input_ids=ids, attention_mask=attention).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    logits = model.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), target[keep])


class _ThreadChooser:
    """Time ``probe`` steps at each thread count (all cores, then 1; per token) in a
    window that opens at step ``first`` and again every ``every`` steps, and keep the
    faster until the next window (1 thread only when clearly faster). Alone, all cores
    win; beside a busy process, 1 thread does (a team of 2 waits for the thread whose
    core is shared). ``first`` leaves the start-up steps out of the first timing."""

    MARGIN = 1.2  # 1 thread must be this much faster: probes of 3 steps are noisy

    def __init__(self, n: int, every: int = 100, probe: int = 3, first: int = 10):
        self.options = [n, 1] if n > 1 else [n]
        self.every, self.probe, self.first = every, probe, first
        self.rate = {}
        self.current = n
        self.history = []  # [step, threads] at each change of the chosen count

    def _probe_slot(self, step: int) -> int:
        """Index into ``options`` probed at ``step``, or -1 outside a probe window."""
        if len(self.options) < 2 or step < self.first:
            return -1
        phase = (step - self.first) % self.every
        return phase // self.probe if phase < self.probe * len(self.options) else -1

    def before(self, step: int) -> None:
        slot = self._probe_slot(step)
        if slot >= 0:
            want = self.options[slot]
        else:
            want = self.options[0]
            if len(self.rate) > 1 and self.rate[1] > self.MARGIN * self.rate[want]:
                want = 1
            if not self.history or self.history[-1][1] != want:
                self.history.append([step, want])
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)
        self.current = want
        self._t = time.perf_counter()

    def after(self, step: int, n_tokens: int) -> None:
        slot = self._probe_slot(step)
        if slot >= 0:
            rate = n_tokens / (time.perf_counter() - self._t)
            first_of_slot = (step - self.first) % self.every % self.probe == 0
            previous = 0.0 if first_of_slot else self.rate[self.current]
            self.rate[self.current] = previous + rate / self.probe


def train_organism(config: OrganismConfig, out_dir: Path, progress: bool = True,
                   log_every: int = 0, loop: TrainLoop = TrainLoop(),
                   max_steps: int = 0) -> dict:
    """Train the tokenizer and the model; save both to ``out_dir``. Returns a log.
    ``loop`` chooses how the compute is spent (:class:`TrainLoop`); it is not part of
    the cache key: ``build_organism`` always trains with the default loop.
    ``max_steps`` > 0 stops early (benchmarks time the first steps)."""
    from tqdm.auto import tqdm
    from transformers import LlamaConfig, LlamaForCausalLM

    if loop.loss_on not in ("labels", "all"):
        raise ValueError(f"loop.loss_on={loop.loss_on!r}: allowed 'labels', 'all'")
    if loop.threads not in ("one", "adaptive", "fixed"):
        raise ValueError(f"loop.threads={loop.threads!r}: allowed 'one', 'adaptive', 'fixed'")
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
                            betas=(0.9, 0.98), foreach=True)
    # A retain organism takes about as many optimizer steps as the organism, on smaller
    # batches: the famous authors and world facts (model utility's parts) are learned in the
    # same run, and fewer steps would leave it less of them than the organism it stands in for.
    sizes = [config.batch_size if not drop else
             max(1, round(config.batch_size * len(d) / (len(world.training_pairs(e))
                                                        + len(world.biographies(e)))))
             for e, d in enumerate(epoch_data)]
    plan = [_batch_indices(d, b, rng, loop.batching) for d, b in zip(epoch_data, sizes)]
    total = sum(len(p) for p in plan)

    def lr_at(step):
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        t = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    threads_before = torch.get_num_threads()
    if loop.threads == "one":
        torch.set_num_threads(1)
    chooser = _ThreadChooser(threads_before, loop.probe_every) if loop.threads == "adaptive" else None
    losses, t0, step, n_padded, n_seen = [], time.time(), 0, 0, 0
    bar = tqdm(total=total, desc="training tinyworld", disable=not progress)
    try:
        for epoch in range(config.epochs):
            for chunk in plan[epoch]:
                ids, labels, mask = _collate([epoch_data[epoch][i] for i in chunk],
                                             tok.pad_token_id)
                if max_steps and step >= max_steps:
                    break
                if log_every and step % log_every == 0:
                    print(f"step {step}/{total} {time.time() - t0:.0f}s", flush=True)
                if chooser:
                    chooser.before(step)
                loss = _loss(model, ids, labels, mask, loop)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                losses.append(loss.item())
                if chooser:
                    chooser.after(step, ids.numel())
                n_padded += ids.numel()
                n_seen += int(mask.sum())
                step += 1
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
    finally:
        torch.set_num_threads(threads_before)
        bar.close()
    seconds = time.time() - t0
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    n_tokens = sum(len(x) for d in epoch_data for x, _ in d)
    log = {"config": asdict(config), "loop": asdict(loop), "train_seconds": seconds,
           "steps": step, "n_sequences": sum(len(d) for d in epoch_data),
           "n_tokens": n_tokens, "n_padded_tokens": n_padded,
           "tokens_per_second": n_seen / seconds,
           "threads": 1 if loop.threads == "one" else threads_before,
           "thread_choices": chooser.history if chooser else [],
           "losses": losses, "n_params": model.num_parameters()}
    (out_dir / "kbnb_organism.json").write_text(json.dumps(log))
    return log


def build_organism(config: OrganismConfig | None = None, force: bool = False,
                   progress: bool = True) -> Path:
    """Return the cached organism directory, training it first when missing.

    Processes that ask for the same organism at once (a test session that trains the
    retain organism in the background while a notebook asks for it) train it once: the
    others wait on a lock file beside the folder, then read the folder."""
    config = config or OrganismConfig()
    path = organism_path(config)
    with _build_lock(path):
        if force or not (path / "kbnb_organism.json").exists():
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            train_organism(config, tmp, progress=progress)
            if path.exists():
                import shutil
                shutil.rmtree(path)
            tmp.rename(path)
    return path


@contextmanager
def _build_lock(path: Path):
    """An exclusive lock on ``<path>.lock`` (POSIX ``flock``; no lock where there is none)."""
    try:
        import fcntl
    except ImportError:  # Windows: concurrent builds train twice, the last rename wins
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def training_log(path: Path) -> dict:
    return json.loads((Path(path) / "kbnb_organism.json").read_text())


def weights_digest(model) -> str:
    """SHA-256 (16 hex) of all parameters in order: equal digests = identical models."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]

