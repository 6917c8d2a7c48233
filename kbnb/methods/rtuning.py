"""R-Tuning (Zhang et al., NAACL 2024; chapter ``notebooks/rtuning.ipynb``): find a
model's knowledge boundary on multiple-choice questions, build refusal-aware training
data, tune, and measure average precision (AP).

The steps, with the reference repository's choices (shizhediao/R-Tuning,
``training/MMLU/run_MMLU.py``, ``evaluation/MMLU/evaluate.py``, ``calculate_ap.py``):

1. Query (:func:`query`). ``scoring="letter"`` (the reference): prompt = MMLU header +
   k answered shots + the question ending in ``Answer:`` (:func:`mmlu_query_prompt`); with
   ``z_c`` the next-token logit of letter c, ``p = softmax(z_A, z_B, z_C, z_D)``.
   ``scoring="cloze"`` (for a model never taught the letter format, such as the
   organism): prompt = the chat prompt of the bare question,
   ``ℓ_i = log π(" " + option_i | prompt)`` summed over the option's tokens,
   ``p = softmax(ℓ_1..ℓ_4)``. Either way prediction = ``argmax p``, confidence =
   ``max p``.
2. Certain = predicted correctly, uncertain = wrong.
3. Training data (:func:`refusal_aware_examples`, :func:`build_training_data`), three
   methods, with ``{answer}`` the gold answer as the model would say it
   (:func:`answer_text`: ``"B."`` for letter scoring, ``" {option sentence}"`` for cloze):
   ``unsure``: ``{prompt}{answer} Are you sure ... knowledge? I am sure.`` (certain) or
   ``... I am unsure.`` (uncertain); ``unknown``: ``{prompt}{answer}`` (certain) or
   ``{prompt}{refusal sentence}`` (uncertain); ``uncertain`` (R-Tuning-U): 5 answers
   sampled at T = 0.7, ``H = entropy of the answer counts``; the lower half of H is
   "sure", the upper half "unsure" (labels do not use correctness).
4. Evaluation (:func:`score_questions`, after :func:`tune_on_examples`):
   ``s = 0.5 * conf + 0.5 * P(sure) / (P(sure) + P(unsure))`` read after
   ``{prompt}{predicted answer} Are you sure ... knowledge? I am``;
   ``AP = Σ_n (R_n − R_{n−1}) P_n`` of s against correctness (:func:`average_precision`).

Fix to the reference: it reads P(sure) as the next-token probability of the *first
token* of ``tokenizer("sure")`` and ``tokenizer("unsure")``. With byte-level BPE
tokenizers those are not the tokens that follow ``" I am"`` (no leading space, and
``" unsure"`` may begin with a token such as ``"Ġ"`` or ``"Ġun"``), so the ratio
compares the wrong events. Here P(sure) and P(unsure) are the full sequence
probabilities of the continuations ``" sure"`` and ``" unsure"``
(:func:`sure_probability`), which is correct for any tokenizer.

The algorithms only: the chapter's seeds, headlines and checks are in
:mod:`kbnb.chapters.rtuning`.
"""
from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from kbnb.core.checks import check_choice
from kbnb.data.prompts import LETTERS, mmlu_prompt, mmlu_question
from kbnb.lm.batching import SCORE_MAX_TOKENS, TRAIN_MAX_TOKENS, token_batches
from kbnb.lm.encoding import completion_sep, encode_text
from kbnb.lm.finetune import finetune
from kbnb.lm.generation import candidate_token_ids
from kbnb.lm.models import format_prompt
from kbnb.lm.scoring import continuation_logprobs, last_token_logits, prompt_lengths
from kbnb.organism.world import ATTRIBUTE_NAMES

if TYPE_CHECKING:
    import pandas as pd

REFUSAL_DATA_METHODS = ("unsure", "unknown", "uncertain")  # how refusal-aware data is labelled
HEADERS = ("kbnb", "reference")
SCORINGS = ("auto", "letter", "cloze")
CLOZE_DATASETS = ("tinyworld", "tofu_authors")  # scoring="auto" gives cloze on these
SURE_QUESTION = "Are you sure you accurately answered the question based on your internal knowledge?"
SURE, UNSURE = " I am sure.", " I am unsure."
# The reference's refusal sentences for the ``unknown`` method (run_MMLU.py, FALSE_RESPONSES).
FALSE_RESPONSES = (
    "The answer is unknown.", "The answer is uncertain.", "The answer is unclear.",
    "It is not known.", "I do not know the answer.", "I'm not sure.",
    "There is no definitive answer.", "There is much debate.",
    "There is no concrete answer to this question.", "It is impossible to answer.",
    "There is no known case.", "There is no public information available.",
    "There is no scientific evidence.", "There is no right answer.",
    "It is impossible to know.", "It is difficult to predict.",
)
MMLU_IN_DOMAIN = 28  # the first 28 MMLU subjects (sorted) are in-domain, the other 29 not
TINYWORLD_IN_DOMAIN = 5  # the first 5 tinyworld attributes are in-domain, the other 4 not


# ---- prompts ---------------------------------------------------------------------------
def reference_prompt(row: dict, shots=()) -> str:
    """The reference's MMLU prompt, byte for byte (``gen_prompt`` in run_MMLU.py).

    It differs from :func:`kbnb.data.prompts.mmlu_prompt` in one place: the reference's
    ``format_subject`` puts a space before every word and the header says
    ``"about {}"``, so there are *two* spaces after "about"
    (``"... about  high school biology."``), as in the original MMLU code."""
    subject = "".join(" " + w for w in row["subject"].split("_"))
    header = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
    return header + "".join(mmlu_question(s, with_answer=True) for s in shots) + mmlu_question(row)


def mmlu_query_prompt(row: dict, shots=(), header: str = "kbnb") -> str:
    """The MMLU query for ``row`` with answered ``shots``: ``header="kbnb"`` is
    :func:`kbnb.data.prompts.mmlu_prompt` (one space after "about"), ``"reference"`` is
    :func:`reference_prompt` (two spaces)."""
    check_choice("prompt_header", header, HEADERS)
    return mmlu_prompt(row, shots) if header == "kbnb" else reference_prompt(row, shots)


def choose_shots(dev_rows, n_shots: int) -> dict:
    """subject -> its first ``n_shots`` rows of ``dev_rows`` (MMLU's dev set has exactly
    5 per subject; the original MMLU evaluation and R-Tuning use them as the 5 shots).
    Raises if a subject has fewer than ``n_shots``."""
    if n_shots < 0:
        raise ValueError(f"n_shots={n_shots}: must be >= 0")
    by = {}
    for r in dev_rows:
        by.setdefault(r["subject"], []).append(r)
    if n_shots == 0:
        return {s: [] for s in by}
    short = {s: len(v) for s, v in by.items() if len(v) < n_shots}
    if short:
        raise ValueError(f"n_shots={n_shots} but the dev set has fewer rows for {short}")
    return {s: v[:n_shots] for s, v in by.items()}


def build_prompts(rows, shots: dict | None = None, header: str = "kbnb") -> list[str]:
    """One MMLU query prompt per row, each with its subject's shots (none if missing)."""
    shots = shots or {}
    return [mmlu_query_prompt(r, shots.get(r["subject"], ()), header) for r in rows]


def gold_letter(row: dict) -> str:
    return LETTERS[row["answer"]]


def resolve_scoring(scoring: str, dataset: str) -> str:
    """``auto`` -> ``cloze`` on :data:`CLOZE_DATASETS` (the organism never learned the
    letter format; TOFU's fictitious authors were taught as answers, not letters),
    ``letter`` otherwise (the reference's scoring, for MMLU)."""
    check_choice("scoring", scoring, SCORINGS)
    if scoring == "auto":
        return "cloze" if dataset in CLOZE_DATASETS else "letter"
    return scoring


def option_texts(row: dict) -> list[str]:
    """The four options as answers: ``choice_answers`` (tinyworld: each choice as the
    organism's answer sentence) when the row has it, else ``choices``."""
    return list(row.get("choice_answers") or row["choices"])


def answer_text(row: dict, index: int, scoring: str, sep: str = " ") -> str:
    """What follows the query prompt when the model gives option ``index``: ``"B."``
    for letter scoring (the reference writes ``{prompt}{letter}.``), ``sep + option``
    for cloze (a final period added if the option has none). ``sep`` is what the chat
    template puts before the assistant's text: :func:`kbnb.lm.encoding.completion_sep`
    of the prompt (``" "`` for the organism, ``""`` after a template ending in a
    newline)."""
    check_choice("scoring", scoring, SCORINGS[1:])
    if scoring == "letter":
        return f"{LETTERS[index]}."
    t = option_texts(row)[index].strip()
    return sep + (t if t.endswith((".", "!", "?")) else t + ".")


def make_prompts(tok, rows, scoring: str, shots: dict | None = None,
                 header: str = "kbnb") -> list[str]:
    """Query prompts: :func:`build_prompts` (MMLU format) for letter scoring; the chat
    prompt of the bare question (:func:`kbnb.lm.models.format_prompt`) for cloze, which takes no
    shots."""
    check_choice("scoring", scoring, SCORINGS[1:])
    if scoring == "letter":
        return build_prompts(rows, shots, header)
    if shots and any(shots.values()):
        raise ValueError("n_shots > 0 needs scoring='letter' (cloze prompts are 0-shot chat turns)")
    return [format_prompt(tok, r["question"]) for r in rows]


# ---- splits ----------------------------------------------------------------------------
def split_by_subject(rows, n_in_domain: int, max_questions: int = 0, seed: int = 0) -> dict:
    """In-domain / out-of-domain split as in R-Tuning's MMLU setup.

    Subjects sorted; the first ``n_in_domain`` are in-domain, and each in-domain
    subject's rows (in their given order) are halved: the first ``floor(n/2)`` go to
    ``train``, the rest to ``test``. The other subjects' rows form ``ood``. With
    ``max_questions > 0`` each of the three lists is cut to at most that many rows by a
    seeded sample that keeps the original order. Returns ``{"train", "test", "ood",
    "in_domain", "out_of_domain"}``."""
    subjects = sorted({r["subject"] for r in rows})
    if not 0 < n_in_domain < len(subjects):
        raise ValueError(f"n_in_domain={n_in_domain}: need 1..{len(subjects) - 1} "
                         f"({len(subjects)} subjects)")
    ind, ood_subj = subjects[:n_in_domain], subjects[n_in_domain:]
    by = {}
    for r in rows:
        by.setdefault(r["subject"], []).append(r)
    train, test = [], []
    for s in ind:
        half = len(by[s]) // 2
        train += by[s][:half]
        test += by[s][half:]
    ood = [r for s in ood_subj for r in by[s]]
    out = {"train": train, "test": test, "ood": ood}
    _cut(out, max_questions, random.Random(seed))
    out.update(in_domain=ind, out_of_domain=ood_subj)
    return out


def split_by_author(rows, ood_rows, max_questions: int = 0, seed: int = 0) -> dict:
    """In-domain / out-of-domain split of questions about authors whose knowledge is
    known (:func:`kbnb.data.loaders.load_tofu_authors_choice`): each group's authors
    (``known`` / ``unseen``) shuffled with ``random.Random(seed)`` and halved, the first
    half's questions to ``train`` and the rest to ``test``, so that the test questions are
    about authors the tuning data never mentions and both splits mix the groups as the
    rows do; ``ood_rows`` (other kinds of questions) form ``ood``. ``max_questions`` cuts
    each list as :func:`split_by_subject` does. Returns ``{"train", "test", "ood",
    "in_domain", "out_of_domain"}`` (the subjects)."""
    rng = random.Random(seed)
    authors = {}
    for r in rows:
        authors.setdefault(r["group"], {}).setdefault(r["author"], None)
    train_authors = set()
    for group in sorted(authors):
        names = list(authors[group])
        if len(names) < 2:
            raise ValueError(f"group {group!r} has {len(names)} author(s): need 2 or more to "
                             "split them into train and test")
        rng.shuffle(names)
        train_authors.update(names[:len(names) // 2])
    out = {"train": [r for r in rows if r["author"] in train_authors],
           "test": [r for r in rows if r["author"] not in train_authors],
           "ood": list(ood_rows)}
    _cut(out, max_questions, rng)
    out.update(in_domain=sorted({r["subject"] for r in rows}),
               out_of_domain=sorted({r["subject"] for r in ood_rows}))
    return out


def _cut(splits: dict, max_questions: int, rng: random.Random) -> None:
    """Cut each list of ``splits`` to at most ``max_questions`` rows (0: no cut) by a
    sample that keeps the original order."""
    if max_questions and max_questions > 0:
        for k, v in splits.items():
            if len(v) > max_questions:
                keep = sorted(rng.sample(range(len(v)), max_questions))
                splits[k] = [v[i] for i in keep]


def tinyworld_questions_and_shots(world, n_dev_authors: int = 5):
    """(question rows, dev rows) of the organism's world in MMLU format.

    The dev rows (shots, for ``n_shots > 0``) are the questions about the first
    ``n_dev_authors`` known authors; those authors are left out of the questions, so
    the question set does not depend on ``n_shots``. The order of ``world.authors``
    (groups interleaved at random) is kept, so halving a subject's rows splits its
    authors into two disjoint halves."""
    known = [a.name for a in world.authors if a.group == "known"][:n_dev_authors]
    rows = world.mmlu_rows()
    return [r for r in rows if r["author"] not in known], [r for r in rows if r["author"] in known]


def split_tinyworld(rows, n_in_domain: int = TINYWORLD_IN_DOMAIN, max_questions: int = 0,
                    seed: int = 0) -> dict:
    """:func:`split_by_subject` for tinyworld rows, with subjects taken in the world's
    attribute order instead of sorted (the first ``n_in_domain`` attributes are
    in-domain)."""
    rank = {a: f"{i:02d}" for i, a in enumerate(ATTRIBUTE_NAMES)}
    keyed = [dict(r, subject=f"{rank[r['subject']]}:{r['subject']}") for r in rows]
    out = split_by_subject(keyed, n_in_domain, max_questions, seed)
    for k in ("train", "test", "ood"):
        out[k] = [dict(r, subject=r["subject"].split(":", 1)[1]) for r in out[k]]
    for k in ("in_domain", "out_of_domain"):
        out[k] = [s.split(":", 1)[1] for s in out[k]]
    return out


def _sample(logits, n_samples, temperature, top_k, gen):
    """``n_samples`` column indices per row of ``logits`` ``[B, K]`` drawn (with
    replacement) from ``softmax(logits / temperature)`` restricted to the ``top_k``
    largest (all when ``top_k`` is 0), ``[B, n_samples]``."""
    k = min(top_k, logits.shape[-1]) if top_k and top_k > 0 else logits.shape[-1]
    top, top_i = torch.topk(logits / temperature, k, dim=-1)
    draw = torch.multinomial(torch.softmax(top, -1), n_samples, replacement=True, generator=gen)
    return torch.gather(top_i, 1, draw)


@torch.no_grad()
def query(model, tok, prompts, rows=None, scoring: str = "letter", n_samples: int = 0,
          temperature: float = 0.7, top_k: int = 50, refusals: bool = False,
          batch_size: int = 32, seed: int = 0, progress: bool = True, desc: str = "querying",
          max_tokens: int = SCORE_MAX_TOKENS):
    """Ask every question once, in batches of at most ``batch_size`` prompts and about
    ``max_tokens`` padded positions (:func:`kbnb.lm.batching.token_batches`). Returns a dict:

    - ``probs`` ``[N, 4]``: letter scoring: ``softmax(z_A..z_D)`` with ``z_c`` the
      log-sum-exp of the next-token logits of letter c's spellings (``"A"``, ``" A"``,
      ...; :func:`kbnb.lm.generation.candidate_token_ids`); cloze: ``softmax(ℓ_1..ℓ_4)``
      with ``ℓ_i = log π(sep + option_i | prompt)`` (``sep``:
      :func:`kbnb.lm.encoding.completion_sep`) (needs ``rows``);
    - ``pred`` ``[N]`` = argmax (option index); ``conf`` ``[N]`` = max (the reference's
      confidence);
    - ``answer_mass`` ``[N]``: how much the model wants to answer at all. Letter: the
      probability that the next token is a letter token (full softmax). Cloze with
      ``refusals``: ``Σ_i π(option_i) / (Σ_i π(option_i) + Σ_r π(" " + r))`` over the
      four options and the refusal sentences :data:`FALSE_RESPONSES`; None otherwise;
    - ``samples`` (``n_samples > 0``, else None): ``n_samples`` answers per question at
      ``temperature``, ``list[list[str]]``. Letter: next tokens drawn from the
      ``top_k`` most likely (the reference calls ``model.generate(max_new_tokens=1,
      do_sample=True, temperature=0.7)``, whose default top-k is 50), decoded and
      stripped. Cloze: options drawn from ``softmax(ℓ / temperature)``, as letters.
    """
    check_choice("scoring", scoring, SCORINGS[1:])
    if not isinstance(n_samples, int) or n_samples < 0:
        raise ValueError(f"n_samples={n_samples!r}: must be an integer >= 0")
    if n_samples > 0 and not temperature > 0:
        raise ValueError(f"temperature={temperature!r}: must be > 0")
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k={top_k!r}: must be an integer >= 0 (0: no top-k cut)")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be an integer >= 1")
    gen = torch.Generator().manual_seed(seed)
    if scoring == "cloze":
        if rows is None or len(rows) != len(prompts):
            raise ValueError("scoring='cloze' needs the rows (one per prompt) for the option texts")
        seps = [completion_sep(tok, p) for p in prompts]
        conts = [[sp + t for t in option_texts(r)] + ([sp + f for f in FALSE_RESPONSES] if refusals else [])
                 for r, sp in zip(rows, seps)]
        extra = FALSE_RESPONSES if refusals else ()
        lp = continuation_logprobs(model, tok, prompts, conts, batch_size=batch_size,
                                   progress=progress, desc=desc, max_tokens=max_tokens)
        if not len(lp):
            lp = torch.zeros(0, len(LETTERS) + len(extra))
        opt = lp[:, :len(LETTERS)]
        probs = torch.softmax(opt, -1)
        conf, pred = probs.max(-1)
        mass = torch.exp(torch.logsumexp(opt, -1) - torch.logsumexp(lp, -1)) if refusals else None
        samples = None
        if n_samples > 0:
            samples = [[LETTERS[i] for i in row]
                       for row in _sample(opt, n_samples, temperature, 0, gen).tolist()]
        return {"probs": probs, "pred": pred, "conf": conf, "answer_mass": mass, "samples": samples}

    ids = candidate_token_ids(tok, LETTERS)
    flat = sorted({i for group in ids for i in group})
    probs, mass, samples = [], [], []
    vocab_text = {}
    groups = token_batches(prompt_lengths(tok, prompts), batch_size, max_tokens)
    for g in tqdm(groups, disable=not progress, desc=desc, leave=False):
        z = last_token_logits(model, tok, [prompts[i] for i in g])
        letters = torch.stack([torch.logsumexp(z[:, i], -1) for i in ids], -1)  # [B, 4]
        probs.append(torch.softmax(letters, -1))
        mass.append(torch.exp(torch.logsumexp(z[:, flat], -1) - torch.logsumexp(z, -1)))
        if n_samples > 0:
            for row in _sample(z, n_samples, temperature, top_k, gen).tolist():
                for t in row:
                    if t not in vocab_text:
                        vocab_text[t] = tok.decode([t]).strip()
                samples.append([vocab_text[t] for t in row])
    probs = torch.cat(probs) if probs else torch.zeros(0, len(LETTERS))
    conf, pred = probs.max(-1)
    return {"probs": probs, "pred": pred, "conf": conf,
            "answer_mass": torch.cat(mass) if mass else torch.zeros(0),
            "samples": samples if n_samples > 0 else None}


def answer_entropy(answers) -> float:
    """Entropy (nats) of the empirical distribution of ``answers`` (a list of strings):
    ``H = −Σ_a (n_a/n) log(n_a/n)``, as ``scipy.stats.entropy`` of the counts."""
    counts = np.array(list(Counter(answers).values()), dtype=float)
    if counts.size == 0:
        raise ValueError("no answers")
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def sure_context(prompt: str, answer: str) -> str:
    """``{prompt}{answer} Are you sure ... knowledge? I am``, ``answer`` from
    :func:`answer_text`. For letter scoring this is ``{prompt}B. Are you sure ...``,
    exactly the reference's ``checksure`` input."""
    return f"{prompt}{answer} {SURE_QUESTION} I am"


def sure_probability(model, tok, prompts, answers, batch_size: int = 32,
                     progress: bool = False, max_tokens: int = SCORE_MAX_TOKENS) -> torch.Tensor:
    """``P(sure) / (P(sure) + P(unsure))`` after :func:`sure_context`, ``[N]``.

    ``P(x) = π(x | context)`` is the probability of the whole continuation ``" sure"`` or
    ``" unsure"`` (product over its tokens, :func:`kbnb.lm.scoring.continuation_logprobs`), so the ratio
    is ``sigmoid(log P(sure) − log P(unsure))``; it is right for any tokenizer, however
    the two words split (the reference's first-token lookup is not)."""
    ctx = [sure_context(p, a) for p, a in zip(prompts, answers)]
    lp = continuation_logprobs(model, tok, ctx, [" sure", " unsure"], batch_size=batch_size,
                               progress=progress, desc="P(sure)", max_tokens=max_tokens)
    return torch.sigmoid(lp[:, 0] - lp[:, 1]) if len(lp) else torch.zeros(0)


def reference_sure_tokens(tok) -> dict:
    """The tokens the reference's ``checksure`` reads: ``tokenizer("sure")`` and
    ``tokenizer("unsure")``'s first ids (no special tokens), with their spellings, next
    to how ``" sure"`` and ``" unsure"`` actually tokenize after ``" I am"``."""
    out = {}
    for w in ("sure", "unsure"):
        first = encode_text(tok, w)[0]
        out[w] = {"reference_first_token": tok.convert_ids_to_tokens(first),
                  "tokens_after_I_am": tok.convert_ids_to_tokens(
                      encode_text(tok, " " + w))}
    return out


# ---- refusal-aware training data -------------------------------------------------------
def build_training_data(method: str, prompts, answers, correct=None, entropies=None,
                        refusal_prefix: str = "", seed: int = 0) -> list[dict]:
    """Refusal-aware examples, one per prompt, shuffled (seeded; the reference shuffles).

    ``answers`` are the gold answers as the model would say them after the prompt
    (:func:`answer_text`: ``"B."`` for letter scoring). Each example: ``prompt``,
    ``completion`` (what the model is tuned to say next), ``text`` = prompt +
    completion (the LMFlow ``text_only`` record), ``label`` (``sure``/``unsure`` or
    ``answer``/``refuse``).

    - ``unsure``: ``"{answer} Are you sure ...? I am sure."`` if ``correct`` else
      ``"... I am unsure."``;
    - ``unknown``: ``"{answer}"`` if ``correct`` else ``refusal_prefix`` + one of
      :data:`FALSE_RESPONSES` drawn at random (letter scoring: right after
      ``"Answer:"``, as the reference writes it; cloze: prefix ``" "``);
    - ``uncertain``: needs ``entropies``; examples sorted by entropy (stable: ties keep
      their order, as Python's sort in the reference), the lower ``floor(n/2)`` get
      ``" I am sure."``, the rest ``" I am unsure."``, all with the gold answer."""
    check_choice("method", method, REFUSAL_DATA_METHODS)
    n = len(prompts)
    if len(answers) != n:
        raise ValueError(f"{n} prompts but {len(answers)} answers")
    rng = random.Random(seed)
    out = []
    if method in ("unsure", "unknown"):
        if correct is None or len(correct) != n:
            raise ValueError(f"method={method!r} needs one `correct` flag per prompt")
        for p, a, c in zip(prompts, answers, correct):
            c = bool(c)
            if method == "unsure":
                comp, label = f"{a} {SURE_QUESTION}" + (SURE if c else UNSURE), "sure" if c else "unsure"
            else:
                comp = a if c else refusal_prefix + FALSE_RESPONSES[rng.randint(0, len(FALSE_RESPONSES) - 1)]
                label = "answer" if c else "refuse"
            out.append({"prompt": p, "completion": comp, "text": p + comp, "label": label})
    else:
        if entropies is None or len(entropies) != n:
            raise ValueError("method='uncertain' needs one entropy per prompt")
        order = sorted(range(n), key=lambda i: entropies[i])
        half = math.floor(n * 0.5)
        for rank, i in enumerate(order):
            sure = rank < half
            comp = f"{answers[i]} {SURE_QUESTION}" + (SURE if sure else UNSURE)
            out.append({"prompt": prompts[i], "completion": comp, "text": prompts[i] + comp,
                        "label": "sure" if sure else "unsure", "entropy": float(entropies[i])})
    rng.shuffle(out)
    return out


def write_training_data(examples, folder, name: str) -> dict:
    """Write ``folder/{name}.json`` in LMFlow's format
    ``{"type": "text_only", "instances": [{"text": ...}]}`` (what the reference feeds
    to LMFlow) and ``folder/{name}/`` as a ``datasets.Dataset`` (all fields) saved with
    ``save_to_disk``. Returns both paths."""
    import datasets

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lmflow = {"type": "text_only", "instances": [{"text": e["text"]} for e in examples]}
    js = folder / f"{name}.json"
    js.write_text(json.dumps(lmflow, ensure_ascii=False))
    ds_path = folder / name
    datasets.Dataset.from_list([dict(e) for e in examples]).save_to_disk(str(ds_path))
    return {"lmflow_json": js, "dataset": ds_path}


def refusal_aware_examples(model, tok, rows, prompts, correct, method: str, scoring: str,
                           sep: str = " ", *, n_samples: int = 5, temperature: float = 0.7,
                           batch_size: int = 32, seed: int = 0,
                           max_tokens: int = SCORE_MAX_TOKENS) -> list[dict]:
    """The refusal-aware training data of ``rows`` (:func:`build_training_data`), with
    the gold answers as the model would say them (:func:`answer_text`, ``sep`` before a
    cloze option, also before a refusal sentence).

    correct: ``[N]`` whether the untuned model answered each question correctly (the
    labels of ``unsure`` and ``unknown``). ``uncertain`` (R-Tuning-U) first samples
    ``n_samples`` answers per question at ``temperature`` (:func:`query` under ``seed``)
    and labels by the entropy of their counts (:func:`answer_entropy`)."""
    answers = [answer_text(r, r["answer"], scoring, sep) for r in rows]
    entropies = None
    if method == "uncertain":  # R-Tuning-U: sampled answers, not correctness
        q = query(model, tok, prompts, rows, scoring=scoring, n_samples=n_samples,
                  temperature=temperature, batch_size=batch_size, seed=seed, progress=False,
                  max_tokens=max_tokens)
        entropies = [answer_entropy(x) for x in q["samples"]]
    return build_training_data(method, prompts, answers, correct, entropies, seed=seed,
                               refusal_prefix="" if scoring == "letter" else sep)


def tune_on_examples(model, tok, examples, *, epochs: int = 10, lr: float = 1e-3,
                     batch_size: int = 16, lora: bool = False, seed: int = 0,
                     progress: bool = True, max_tokens: int = TRAIN_MAX_TOKENS,
                     gradient_checkpointing="auto", autocast: str | None = None):
    """Fine-tune a copy of ``model`` on refusal-aware ``examples``: each prompt with its
    completion and EOS as the target (the loss covers everything after the prompt),
    :func:`kbnb.lm.finetune.finetune` (a step of ``batch_size`` examples is split into
    micro-batches of about ``max_tokens`` positions when it is longer; same effective
    batch). ``autocast``: None or ``"bfloat16"`` (mixed precision). Returns ``(tuned
    model, losses per step)``."""
    return finetune(model, tok, [e["prompt"] for e in examples],
                    [e["completion"] + (tok.eos_token or "") for e in examples], epochs=epochs,
                    lr=lr, batch_size=batch_size, lora=lora, seed=seed, progress=progress,
                    max_tokens=max_tokens, gradient_checkpointing=gradient_checkpointing,
                    autocast=autocast)


# ---- evaluation ------------------------------------------------------------------------
def average_precision(labels, scores) -> float:
    """``AP = Σ_n (R_n − R_{n−1}) P_n`` over the distinct score thresholds in decreasing
    order (ties form one threshold), ``P_n``/``R_n`` precision/recall of "score ≥
    threshold n" at predicting ``labels`` (1 = correct). Same as
    ``sklearn.metrics.average_precision_score``. NaN if there is no positive."""
    y = np.asarray(labels, dtype=float).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # last index of each threshold
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def questions_frame(rows, q) -> "pd.DataFrame":
    """A DataFrame of the queried questions: ``subject``, ``group``/``exposure``/
    ``author`` (when the rows have them), ``gold``, ``pred`` (letters), ``conf``,
    ``correct``."""
    import pandas as pd

    df = pd.DataFrame({"subject": [r["subject"] for r in rows]})
    for k in ("group", "exposure", "author"):
        if rows and k in rows[0]:
            df[k] = [r[k] for r in rows]
    df["gold"] = [gold_letter(r) for r in rows]
    df["pred"] = [LETTERS[i] for i in q["pred"].tolist()]
    df["conf"] = q["conf"].numpy()
    df["correct"] = df["gold"] == df["pred"]
    return df


def score_questions(model, tok, rows, prompts, method: str, scoring: str = "letter",
                    batch_size: int = 32, progress: bool = True,
                    desc: str = "evaluating", max_tokens: int = SCORE_MAX_TOKENS) -> "pd.DataFrame":
    """:func:`questions_frame` plus ``willing``, ``answered``, ``score``.

    ``willing`` is the model's willingness to answer: for ``unsure``/``uncertain``,
    ``P(sure)/(P(sure)+P(unsure))`` (:func:`sure_probability`, after the predicted
    answer); for ``unknown``, ``answer_mass`` of :func:`query` (the probability of
    answering rather than starting a refusal). ``answered`` = ``willing > 0.5``;
    ``score = 0.5 * conf + 0.5 * willing`` (the reference's AP score)."""
    check_choice("method", method, REFUSAL_DATA_METHODS)
    q = query(model, tok, prompts, rows, scoring=scoring, refusals=method == "unknown",
              batch_size=batch_size, progress=progress, desc=desc, max_tokens=max_tokens)
    df = questions_frame(rows, q)
    if method == "unknown":
        willing = q["answer_mass"]
    else:
        answers = [answer_text(r, i, scoring, completion_sep(tok, p))
                   for r, i, p in zip(rows, q["pred"].tolist(), prompts)]
        willing = sure_probability(model, tok, prompts, answers, batch_size=batch_size,
                                   progress=progress, max_tokens=max_tokens)
    df["willing"] = willing.numpy()
    df["answered"] = df["willing"] > 0.5
    df["score"] = 0.5 * df["conf"] + 0.5 * df["willing"]
    return df


def summarize(df) -> dict:
    """accuracy, answer_rate, answered_accuracy (accuracy on the answered questions;
    NaN if none), ap_conf (AP of the confidence alone), ap_score (AP of the R-Tuning
    score), n."""
    ans = df[df["answered"]]
    return {"n": int(len(df)), "accuracy": float(df["correct"].mean()),
            "answer_rate": float(df["answered"].mean()),
            "answered_accuracy": float(ans["correct"].mean()) if len(ans) else float("nan"),
            "ap_conf": average_precision(df["correct"], df["conf"]),
            "ap_score": average_precision(df["correct"], df["score"])}
