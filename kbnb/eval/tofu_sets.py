"""TOFU's evaluation sets: the five sets of :func:`kbnb.eval.tofu_scoring.evaluate_unlearning`
on the organism's world (:func:`organism_sets`) or on real TOFU (:func:`tofu_sets`), the
validation rows of a hyperparameter search that no evaluation asks, and the rows an
unlearning method keeps. No model: rows only."""
from __future__ import annotations

from kbnb.data.loaders import load_tofu
from kbnb.data.splits import HOLDOUT_OF, RETAIN_OF, check_forget_split
from kbnb.organism.world import ATTRIBUTES


def organism_sets(world, forget_split: str = "forget10", n_retain: int | None = 90) -> dict:
    """The five TOFU evaluation sets on a tinyworld ``world``: ``forget`` (the split),
    ``retain`` (the first ``n_retain`` rows of the retain split's known authors, as TOFU's
    retain_perturbed is a fully trained subset of its retain split; None = all),
    ``real_authors`` (the famous authors), ``world_facts`` (city facts) and ``holdout``
    (unseen authors, as many as the forget split has). Deterministic: shared by seeds."""
    check_forget_split(forget_split)
    s = world.splits()
    retain = [r for r in s[RETAIN_OF[forget_split]] if r["group"] == "known"]
    retain = retain if n_retain is None else retain[:n_retain]
    return {"forget": [paraphrased_perturbations(r, world) for r in s[forget_split]],
            "retain": [paraphrased_perturbations(r, world) for r in retain],
            "real_authors": world.real_author_rows(), "world_facts": world.world_fact_rows(),
            "holdout": s[HOLDOUT_OF[forget_split]]}


def organism_validation_sets(world, forget_split: str = "forget10", n_retain: int = 90) -> dict:
    """Validation rows for choosing a method's hyperparameters, read by no evaluation:
    ``forget`` = the forget split's facts asked with their paraphrased question (the
    evaluation asks the original one), ``retain`` = the ``n_retain`` known retain rows
    after the evaluation's first ``n_retain`` (trained on by the methods' retain term,
    as the evaluation's are). Perturbations as :func:`organism_sets`."""
    check_forget_split(forget_split)
    s = world.splits()
    known = [r for r in s[RETAIN_OF[forget_split]] if r["group"] == "known"]
    retain = known[n_retain:2 * n_retain]
    if not retain:
        raise ValueError(f"n_retain={n_retain}: no known retain rows are left after the "
                         f"evaluation's for validation ({len(known)} in all)")
    forget = [dict(paraphrased_perturbations(r, world), question=r["paraphrased_question"])
              for r in s[forget_split]]
    return {"forget": forget, "retain": [paraphrased_perturbations(r, world) for r in retain]}


def tofu_validation_sets(forget_split: str = "forget10", data_dir=None,
                         n_retain: int | None = None) -> dict:
    """:func:`organism_validation_sets` on real TOFU: the forget split's
    ``paraphrased_question`` s, and the rows of ``retain_perturbed`` after the
    evaluation's first ``n_retain`` (none left when the evaluation takes all 400)."""
    check_forget_split(forget_split)
    retain = load_tofu("retain_perturbed", data_dir)
    rest = [] if n_retain is None else retain[n_retain:2 * n_retain]
    if not rest:
        raise ValueError(f"n_retain={n_retain}: retain_perturbed has {len(retain)} rows and the "
                         "evaluation takes them all; give n_retain (at most half of them) to "
                         "leave validation rows")
    forget = [dict(r, question=r["paraphrased_question"])
              for r in load_tofu(forget_split, data_dir, perturbed=True)]
    return {"forget": forget, "retain": rest}


def paraphrased_perturbations(row: dict, world) -> dict:
    """The row with its perturbed answers in the paraphrased answer's phrasing (``X's
    father worked as a W.`` beside ``X's father worked as a V.``), as TOFU's perturbed
    answers perturb its paraphrased answer: the forget and retain truth ratios then
    compare the right and wrong values in one phrasing, not a trained phrasing (the
    world rows' perturbations use the training answer's) with a held-out one."""
    attr = next(a for a in ATTRIBUTES if a.name == row["attribute"])
    by_answer = {attr.answer.format(n=row["author"], v=w): w for w in world._values(attr)}
    wrong = [by_answer[p] for p in row["perturbed_answer"]]
    return {**row, "perturbed_answer": [attr.paraphrased_answer.format(n=row["author"], v=w)
                                        for w in wrong]}


def organism_retain_rows(world, forget_split: str = "forget10") -> list[dict]:
    """Rows an unlearning method keeps (its retain term): the retain split's known facts
    (partial authors' facts include ones never trained on)."""
    check_forget_split(forget_split)
    return [r for r in world.splits()[RETAIN_OF[forget_split]] if r["group"] == "known"]


def tofu_sets(forget_split: str = "forget10", data_dir=None, n_retain: int | None = None) -> dict:
    """The five sets of real TOFU (``kbnb.data.load_tofu``): forget and retain with
    perturbations (``{split}_perturbed``, ``retain_perturbed``), real authors and world
    facts (``*_perturbed``), the matching holdout split."""
    check_forget_split(forget_split)
    retain = load_tofu("retain_perturbed", data_dir)
    return {"forget": load_tofu(forget_split, data_dir, perturbed=True),
            "retain": retain if n_retain is None else retain[:n_retain],
            "real_authors": load_tofu("real_authors", data_dir, perturbed=True),
            "world_facts": load_tofu("world_facts", data_dir, perturbed=True),
            "holdout": load_tofu(HOLDOUT_OF[forget_split], data_dir)}
