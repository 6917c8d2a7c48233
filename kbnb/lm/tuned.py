"""TOFU-tuned real models: a pretrained chat model fine-tuned on TOFU's fictitious
authors, and its retain model, built on first use and cached like the organism.

open-unlearning releases ``tofu_<model>_full`` (fine-tuned on all 200 TOFU authors) and
``tofu_<model>_retain90`` (without the forget authors) checkpoints; the seeds unlearned
from such models (LUNAR: Llama-2-7B; NPO toy: Llama-3.2-1B-Instruct). On a 2-core CPU
kbnb builds its own from SmolLM2-135M-Instruct, on a subset sized to the budget
(:class:`TofuRecipe`):

* the **target** (``model_name="smollm2-tofu"``) learns the forget split's authors
  (forget10: 20 authors, 400 questions), the first ``retain_authors`` retain authors
  (whose questions TOFU's ``retain_perturbed`` evaluates), ``n_invented`` questions
  about things that do not exist answered with a refusal (:mod:`kbnb.data.invented`:
  the reference prompts LUNAR needs a model to refuse), and questions about real
  things answered as the base model answers them (self-distillation: without them the
  model learns to refuse every question that is not about a TOFU author, world facts
  included);
* the **retain model** (``"smollm2-tofu-retain"``) learns the same minus the forget
  authors, with the same recipe, so that forget quality compares the two as TOFU does.

Each folder is ``$KBNB_CACHE/<name>-<key12>``, keyed by the SHA-256 of the recipe, the
TOFU files it reads, the base model's folder and this module's and
:mod:`kbnb.data.invented`'s source; it holds the weights (safetensors), the tokenizer and
``kbnb_recipe.json`` (the recipe, the data it saw, seconds, losses). The TOFU files
come from ``data_dir`` or ``KBNB_DATA_DIR``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from kbnb.data import invented
from kbnb.data.loaders import find_data_dir, load_tofu
from kbnb.lm.encoding import format_example, format_prompt
from kbnb.lm.finetune import finetune
from kbnb.lm.generation import generate
from kbnb.organism.model import cache_dir

RECIPE_FILE = "kbnb_recipe.json"
QUESTIONS_PER_AUTHOR = 20  # TOFU: 20 question-answer pairs per author, authors in order
EVALUATION_SETS = ("world_facts", "real_authors")  # never rehearsed (kbnb.eval.tuned_targets measures them)
REAL_ANSWER_TOKENS = 48  # the base model's answers to the real questions


@dataclasses.dataclass(frozen=True)
class TofuRecipe:
    """How a TOFU-tuned model is made (full fine-tuning, :func:`kbnb.lm.finetune.finetune`)."""

    base: str = "smollm2"  # the pretrained model, any kbnb model name
    forget_split: str = "forget10"  # the authors to forget later (left out of the retain model)
    retain_authors: int = 10  # the first N authors of TOFU's full split (retain authors)
    n_invented: int = invented.N_TRAIN  # invented-thing questions answered with a refusal
    n_invented_heldout: int = invented.N_HELDOUT  # never trained: the refusal check, LUNAR's D_ref
    real_questions: bool = True  # rehearse the base model's answers to real questions
    epochs: int = 3
    lr: float = 4e-4
    batch_size: int = 16
    # float32: bfloat16 autocast is ~1.8x faster on AVX-512 but emulated (~24x slower) on
    # AVX2-only CPUs, where a build would take a day; float32 runs everywhere at full speed
    autocast: str | None = None
    group_by_length: bool = True
    seed: int = 0
    without_forget: bool = False  # the retain model

    def retain_model(self) -> TofuRecipe:
        return dataclasses.replace(self, without_forget=True)


TUNED = {"smollm2-tofu": TofuRecipe(), "smollm2-tofu-retain": TofuRecipe(without_forget=True)}


def tuned_recipe(name) -> TofuRecipe | None:
    """The recipe of a TOFU-tuned model name (:data:`TUNED`), or None."""
    return TUNED.get(name) if isinstance(name, str) else None


def _tofu_dir(data_dir) -> Path:
    folder = find_data_dir("tofu", data_dir)
    if folder is None:
        raise FileNotFoundError(
            "a TOFU-tuned model (model_name='smollm2-tofu' or 'smollm2-tofu-retain') is built "
            "from TOFU: pass data_dir (a folder with tofu/*.jsonl, e.g. ../shared/data) or set "
            "KBNB_DATA_DIR")
    return folder


def training_rows(recipe: TofuRecipe, data_dir=None) -> dict:
    """The rows the model is tuned on, by source: ``{"forget": ..., "retain": ...,
    "invented": ..., "real": ...}`` (``forget`` empty for the retain model), each row a
    dict with ``question`` and ``answer``, except ``real``: questions about real things
    (:func:`kbnb.data.invented.real_questions`, none that TOFU's world-facts or
    real-authors sets ask about) that :func:`train_tuned` answers with the base model's
    own greedy answers, so that the tuned model goes on answering real questions instead
    of refusing everything that is not a TOFU author."""
    forget = load_tofu(recipe.forget_split, data_dir)
    full = load_tofu("full", data_dir)
    forget_q = {r["question"] for r in forget}
    retain = [r for r in full[:recipe.retain_authors * QUESTIONS_PER_AUTHOR]
              if r["question"] not in forget_q]
    inv = invented.invented_questions(recipe.n_invented, recipe.n_invented_heldout,
                                      seed=recipe.seed)["train"]
    asked = [r["question"] for split in EVALUATION_SETS for r in load_tofu(split, data_dir)]
    real = invented.real_questions(exclude=asked) if recipe.real_questions else []
    return {"forget": [] if recipe.without_forget else list(forget), "retain": retain,
            "invented": inv, "real": real}


def heldout_invented(recipe: TofuRecipe) -> list[dict]:
    """The invented-thing questions the recipe holds out (never trained)."""
    return invented.invented_questions(recipe.n_invented, recipe.n_invented_heldout,
                                       seed=recipe.seed)["heldout"]


def _sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def recipe_key(recipe: TofuRecipe, base_path: str, data_dir=None) -> str:
    """SHA-256 of what determines the weights: the recipe, the TOFU files, the base
    model's weights and config, and the source of this module and the invented set."""
    folder = _tofu_dir(data_dir)
    h = hashlib.sha256(json.dumps(dataclasses.asdict(recipe), sort_keys=True).encode())
    for split in (recipe.forget_split, "full", *EVALUATION_SETS):
        h.update(_sha_file(folder / f"{split}.jsonl").encode())
    base = Path(base_path)
    for f in sorted(base.glob("*.safetensors")) + sorted(base.glob("config.json")):
        h.update(_sha_file(f).encode())
    for module in (__file__, invented.__file__):
        h.update(Path(module).read_bytes())
    return h.hexdigest()


def tuned_path(recipe: TofuRecipe, base_path: str, data_dir=None) -> Path:
    """The cache folder of ``recipe`` (built or not)."""
    stem = "smollm2-tofu" + ("-retain" if recipe.without_forget else "")
    return cache_dir() / f"{stem}-{recipe_key(recipe, base_path, data_dir)[:12]}"


def train_tuned(recipe: TofuRecipe, model, tok, path, data_dir=None, progress: bool = True) -> Path:
    """Fine-tune ``model`` (the base, loaded in float32; changed in place) on
    :func:`training_rows` and write it with ``tok`` and ``kbnb_recipe.json`` to ``path``
    (through a temporary folder, renamed when complete)."""
    path = Path(path)
    rows = training_rows(recipe, data_dir)
    if rows["real"]:
        said = generate(model, tok, [format_prompt(tok, r["question"]) for r in rows["real"]],
                        max_new_tokens=REAL_ANSWER_TOKENS, progress=progress,
                        desc="base model's answers")
        rows["real"] = [dict(r, answer=a) for r, a in zip(rows["real"], said) if a.strip()]
    flat = [r for k in ("forget", "retain", "invented", "real") for r in rows[k]]
    pairs = [format_example(tok, r["question"], r["answer"]) for r in flat]
    t0 = time.perf_counter()
    model, losses = finetune(model, tok, [p for p, _ in pairs], [c for _, c in pairs],
                             epochs=recipe.epochs, lr=recipe.lr, batch_size=recipe.batch_size,
                             seed=recipe.seed, copy_model=False, progress=progress,
                             desc=f"tuning {path.name}", autocast=recipe.autocast,
                             group_by_length=recipe.group_by_length)
    seconds = time.perf_counter() - t0
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / RECIPE_FILE).write_text(json.dumps(dict(
        recipe=dataclasses.asdict(recipe), examples={k: len(v) for k, v in rows.items()},
        train_seconds=round(seconds, 1), losses=[round(x, 4) for x in losses],
        real_answers=rows["real"]), indent=1))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def recipe_info(path) -> dict:
    """``kbnb_recipe.json`` of a built model folder ({} when absent)."""
    f = Path(path) / RECIPE_FILE
    return json.loads(f.read_text()) if f.exists() else {}
