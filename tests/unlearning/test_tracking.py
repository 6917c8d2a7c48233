"""NPO toy chapter: the loss, the response picker, the shared training loop and its hook,
the frozen reference, the notebook."""
import json
import math

import pytest
import torch

from kbnb.chapters import npo_toy as chapter
from kbnb.lm.generation import sequence_logprobs
from kbnb.unlearning import losses, tracking
from kbnb.unlearning.loop import cycle_batches

FAST = dict(n_candidates=60, steps=20, eval_every=5, lr=3e-4)  # the fast notebook parameters


def logsig(x):
    return -math.log1p(math.exp(-x))


# ---- the loss -------------------------------------------------------------------------------
def test_npo_loss_matches_a_hand_computation():
    logp = torch.tensor([-3.0, -10.0], requires_grad=True)
    ref = torch.tensor([-2.0, -2.0])
    loss = losses.npo_loss(logp, ref, beta=0.1)
    # Δ = [-1, -8]: L = -(2/0.1) · mean(log σ(0.1), log σ(0.8))
    hand = -20.0 * (logsig(0.1) + logsig(0.8)) / 2
    assert loss.item() == pytest.approx(hand, rel=1e-6)
    loss.backward()
    # ∂L/∂logp_i = (2/B)·σ(β·Δ_i) = σ(-0.1), σ(-0.8) for B = 2
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert logp.grad.tolist() == pytest.approx([sig(-0.1), sig(-0.8)], rel=1e-6)
    assert (losses.npo_weight([-1.0, -8.0], 0.1) / 2).tolist() == pytest.approx(logp.grad.tolist())


def test_npo_loss_at_the_reference_and_its_small_beta_limit():
    lp = torch.tensor([-1.0, -4.0])
    assert losses.npo_loss(lp, lp, beta=0.5).item() == pytest.approx(2 / 0.5 * math.log(2))
    # L = 2·log2/β + mean Δ + O(β): the constant aside, NPO becomes the mean log-ratio
    ref = torch.tensor([0.0, -1.0])
    for beta in (1e-3, 1e-4):
        got = losses.npo_loss(lp, ref, beta).double().item() - 2 * math.log(2) / beta
        assert got == pytest.approx((-1.0 - 3.0) / 2, abs=0.05)
    with pytest.raises(ValueError, match="beta"):
        losses.npo_loss(lp, ref, beta=0.0)


def _grads(beta):
    """Gradients on logits [2, T, V] of NPO (β) and GA, for two answers whose log-probabilities
    sit 0 and 10 nats below the reference, of different lengths."""
    torch.manual_seed(0)
    logits = torch.randn(2, 7, 11, requires_grad=True)
    labels = torch.full((2, 7), -100)
    labels[0, 2:] = torch.tensor([1, 2, 3, 4, 5])
    labels[1, 4:] = torch.tensor([6, 7, 8])
    lp = sequence_logprobs(logits, labels)
    ref = lp.detach() + torch.tensor([0.0, 10.0])
    g_npo, = torch.autograd.grad(losses.npo_loss(lp, ref, beta), logits)
    lp = sequence_logprobs(logits, labels)
    g_ga, = torch.autograd.grad(losses.ga_loss(lp, (labels[:, 1:] != -100).sum(-1)), logits)
    return g_npo.flatten(), g_ga.flatten()


def test_npo_gradient_direction_approaches_gradient_ascent_as_beta_goes_to_0():
    cos = {b: torch.nn.functional.cosine_similarity(*_grads(b), dim=0).item() for b in (1.0, 1e-4)}
    assert cos[1e-4] > 0.99999
    assert cos[1.0] < 0.95  # with β = 1 the answer 10 nats down gets weight 2σ(-10) ≈ 1e-4


# ---- picking responses -------------------------------------------------------------------------
def test_pick_responses_gives_disjoint_ordered_groups():
    texts = [f"answer {i}" for i in range(22)]
    lps = [-float(i) for i in range(22)]
    # duplicates, an excluded ground truth, an empty one and a broken UTF-8 piece
    texts += ["answer 3", "the truth", "", "bro\ufffdken"]
    lps += [-3.0, 0.0, 5.0, 9.0]
    perm = torch.randperm(len(texts), generator=torch.Generator().manual_seed(1)).tolist()
    g = tracking.pick_responses([texts[i] for i in perm], [lps[i] for i in perm], k=5,
                           exclude=["the truth"])
    assert [r for r, _ in g["high"]] == [f"answer {i}" for i in range(5)]
    assert [r for r, _ in g["low"]] == [f"answer {i}" for i in range(17, 22)]
    picked = [r for grp in tracking.GROUPS for r, _ in g[grp]]
    assert len(picked) == len(set(picked)) == 15
    assert "the truth" not in picked and "" not in picked and "bro\ufffdken" not in picked
    for grp in tracking.GROUPS:
        v = [lp for _, lp in g[grp]]
        assert v == sorted(v, reverse=True)
    assert min(lp for _, lp in g["high"]) > max(lp for _, lp in g["middle"])
    assert min(lp for _, lp in g["middle"]) > max(lp for _, lp in g["low"])
    mids = [lp for _, lp in g["middle"]]
    assert mids[0] >= -11 >= mids[-1]  # around the median of 22 values (0..-21)


def test_pick_responses_needs_three_groups_worth():
    with pytest.raises(ValueError, match="only 14 distinct responses"):
        tracking.pick_responses([f"a{i}" for i in range(14)], list(range(14)), k=5)
    with pytest.raises(ValueError, match="3 responses but 2"):
        tracking.pick_responses(["a", "b", "c"], [1, 2], k=1)
    g = tracking.pick_responses([f"a{i}" for i in range(15)], list(range(15)), k=5)
    assert [r for r, _ in g["middle"]] == [f"a{i}" for i in (9, 8, 7, 6, 5)]


def test_tracked_set_and_group_series():
    groups = {g: [(f"{g}{i}", -float(i)) for i in range(2)] for g in tracking.GROUPS}
    tracked = tracking.tracked_set(groups, "truth", "fixed answer")
    assert [t[1] for t in tracked] == ["high"] * 2 + ["middle"] * 2 + ["low"] * 2 + ["ground_truth", "fixed"]
    hist = {"steps": [0, 5], "logps": [list(range(8)), [x - 1 for x in range(8)]]}
    s = tracking.group_series(hist, tracked)
    assert s["high"] == [0.5, -0.5] and s["ground_truth"] == [6, 5] and s["fixed"] == [7, 6]


def test_slowdown_compares_first_and_last_slopes():
    steps = list(range(0, 110, 10))
    assert tracking.slowdown(steps, [-2.0 * s for s in steps])["ratio"] == pytest.approx(1.0)
    sat = [-100 * (1 - math.exp(-s / 15)) for s in steps]
    r = tracking.slowdown(steps, sat)
    assert r["first_slope"] < 0 and 0 < r["ratio"] < 0.05
    with pytest.raises(ValueError, match="at least 4"):
        tracking.slowdown([0, 1, 2], [0, 1, 2])


# ---- the shared loop's batches ------------------------------------------------------------------
def test_cycle_batches_cycles_through_shuffled_passes():
    import random
    rng = random.Random(0)
    it = cycle_batches(5, 2, rng)
    got = [next(it) for _ in range(5)]
    assert all(len(b) == 2 for b in got)
    flat = [i for b in got for i in b]
    assert sorted(flat[:5]) == list(range(5))  # the first pass holds every row once
    assert next(cycle_batches(3, 4, rng)) == [0, 1, 2]  # fewer rows than a batch: all of them


def test_chapter_params_list_the_losses_to_run():
    assert chapter.Params().losses == ["npo", "ga"]
    assert chapter.Params(loss="ga").losses == ["ga", "npo"]
    assert chapter.Params(compare=False).losses == ["npo"]
    with pytest.raises(ValueError, match="train_on='all': allowed 'sample', 'split'"):
        chapter.Params(train_on="all")


# ---- data ---------------------------------------------------------------------------------------
def test_forget_and_retain_on_the_world(world):
    forget, retain = chapter.forget_and_retain("tinyworld", "forget10", world=world)
    assert {r["group"] for r in forget} == {"known"}
    assert not {r["author"] for r in forget} & {r["author"] for r in retain}
    assert chapter.check_sample_index(18, forget) is forget[18]
    with pytest.raises(ValueError, match=r"sample_index=999 but the forget split has 180 rows \(0-179\)"):
        chapter.check_sample_index(999, forget)
    with pytest.raises(ValueError, match="forget_split='forget20': allowed"):
        chapter.forget_and_retain("tinyworld", "forget20", world=world)
    with pytest.raises(ValueError, match="dataset='mmlu': allowed 'tinyworld', 'tofu'"):
        chapter.forget_and_retain("mmlu", "forget10", world=world)


def test_forget_and_retain_on_tofu(data_dir):
    forget, retain = chapter.forget_and_retain("tofu", "forget10", data_dir)
    assert len(forget) == 400 and len(retain) == 3600
    assert forget[18]["question"] and forget[18]["answer"]


# ---- on the organism ---------------------------------------------------------------------------
def test_sampled_and_scored_responses(organism, world):
    model, tok = organism
    row = world.splits()["forget10"][18]
    torch.manual_seed(0)
    got = tracking.sample_responses(model, tok, row["question"], 7, temperature=1.5, max_new_tokens=16,
                               progress=False)
    assert len(got) == 7 and all(isinstance(x, str) for x in got)
    lp = tracking.score_responses(model, tok, row["question"],
                                  [row["answer"], "She mainly writes in English."])
    assert lp.shape == (2,) and lp[0] > -1.0 > lp[1]  # a known fact is near certain


def test_unlearning_leaves_the_reference_frozen(organism, world):
    model, tok = organism
    forget, retain = chapter.forget_and_retain("tinyworld", "forget10", world=world)
    row = forget[18]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hist = tracking.unlearn_and_track(
        model, tok, [row], row["question"], [row["answer"], "She mainly writes in English."],
        loss="npo", retain_rows=retain, retain_loss="kl", alpha=1.0, lr=1e-3, steps=4,
        eval_every=2, batch_size=2, progress=False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
    assert hist["steps"] == [0, 2, 4] and len(hist["logps"]) == 3 and len(hist["losses"]) == 4
    assert hist["logps"][-1][0] < hist["logps"][0][0] - 1.0  # the copy did unlearn the answer
    assert hist["npo_weight"][0] == pytest.approx(1.0, abs=1e-3)  # Δ = 0 at the start


def test_unlearn_rejects_bad_values(organism, world):
    model, tok = organism
    row = world.splits()["forget10"][0]
    args = (model, tok, [row], row["question"], [row["answer"]])
    with pytest.raises(ValueError, match="loss='dpo': allowed 'npo', 'ga'"):
        tracking.unlearn_and_track(*args, loss="dpo")
    with pytest.raises(ValueError, match="retain_loss='l2': allowed 'none', 'nll', 'kl'"):
        tracking.unlearn_and_track(*args, retain_loss="l2")
    with pytest.raises(ValueError, match="needs retain rows"):
        tracking.unlearn_and_track(*args, retain_loss="nll")


# ---- the notebook --------------------------------------------------------------------------------
@pytest.mark.slow
def test_npo_toy_notebook(tmp_path, organism, run_notebook):
    doc = run_notebook("npo_toy", tmp_path, **FAST)
    m = doc["metrics"]
    seeds = [str(s) for s in doc["params"]["seeds"]]
    assert doc["params"]["steps"] == FAST["steps"] and doc["params"]["beta"] == 0.1
    assert len(seeds) >= 2 and set(m["change"]) == set(seeds)
    for s in seeds:
        assert set(m["change"][s]) == {"npo", "ga"} and set(m["slowdown"][s]) == {"npo", "ga"}
        assert m["change"][s]["npo"]["ground_truth"] < -10  # the ground truth was unlearned
    # the fast learning rate (3e-4) drags the fixed answer down too on this organism; the
    # claim itself is checked, with its interval, in the book's run at the default 3e-5
    assert isinstance(m["checks_plain"]["gt_over_fixed"], bool)
    assert m["checks"]["gt_vs_fixed"]["sentence"]
    t = m["tofu_metrics"]  # TOFU's metrics against the retain organism, for each loss
    assert set(t) == {"untouched", "npo", "ga"}
    assert t["untouched"]["forget_quality"] < 0.01 and 0 < t["npo"]["model_utility"] <= 1
    assert {"forget_quality_npo", "model_utility_npo"} <= set(m["headline"])
    assert {"fixed_over_gt", "gt_fall", "high_fall"} <= set(m["headline"])
    folder = next((tmp_path / "runs").glob("npo_toy-*"))
    res = json.loads((folder / "npo_unlearn_results.json").read_text())
    r0 = res["seeds"][seeds[0]]
    assert len(r0["responses"]) == 17
    assert [r["group"] for r in r0["responses"]][-2:] == ["ground_truth", "fixed"]
    s = r0["series"]["npo"]
    assert s["steps"] == [0, 5, 10, 15, 20] and all(len(v) == 17 for v in s["logps"])
    assert (folder / "fig_npo_log_probs.png").stat().st_size > 0
    assert (folder / "fig_npo_vs_ga.png").stat().st_size > 0


@pytest.mark.slow
def test_npo_toy_notebook_rejects_a_bad_loss(tmp_path, run_notebook):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match="loss='dpo': allowed 'npo', 'ga'"):
        run_notebook("npo_toy", tmp_path, loss="dpo", **FAST)
