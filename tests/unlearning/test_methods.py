"""TOFU metrics (hand computations, then one tiny random model), the unlearning methods
(registry, validation, each method on a tiny random model), the shared training loop and
its per-step hook, and the unlearning chapter's helpers."""
import math
import re

import numpy as np
import pytest
import torch

from kbnb.eval import tofu as M
from kbnb.eval import tofu_scoring as S
from kbnb.eval import tofu_sets
from kbnb.lm.generation import response_logprobs
from kbnb.lm.models import format_example
from kbnb.unlearning import methods as U
from kbnb.unlearning import tuning as T

# ---- a tiny random model with a tokenizer trained here ---------------------------------------

NAMES = ["Ana Vell", "Bo Kirr", "Cy Dunmore", "Di Osk", "Ed Parl", "Fe Quorn", "Gi Rask",
         "Ho Sint", "Iv Tamm", "Jo Ulve", "Ka Wren", "Lu Yarr"]
CITIES = ["Oslo", "Lima", "Pune", "Kobe", "Nice", "Graz"]


def _row(name, i):
    city, other = CITIES[i % 6], [CITIES[(i + j) % 6] for j in (1, 2, 3)]
    return {"question": f"Where was {name} born?", "answer": f"{name} was born in {city}.",
            "paraphrased_answer": f"The birthplace of {name} is {city}.",
            "perturbed_answer": [f"{name} was born in {c}." for c in other]}


ROWS = [_row(n, i) for i, n in enumerate(NAMES)]
SETS = {
    "forget": ROWS[:4], "retain": ROWS[4:8],
    "holdout": [{"question": r["question"], "answer": r["answer"]} for r in ROWS[8:12]],
    "real_authors": [{"question": "Who wrote Hamlet?", "answer": "Shakespeare",
                      "perturbed_answer": ["Dickens", "Austen", "Twain"]},
                     {"question": "Who wrote 1984?", "answer": "George Orwell",
                      "perturbed_answer": ["Huxley", "Bradbury"]}],
    "world_facts": [{"question": "Where is the Eiffel Tower?", "answer": "Paris",
                     "perturbed_answer": ["Berlin", "London", "Madrid"]},
                    {"question": "Which country is the Land of the Rising Sun?", "answer": "Japan",
                     "perturbed_answer": ["China", "Korea", "Siam"]}],
}


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [f"Question: {r['question']}\nAnswer: {r['answer']} {r['paraphrased_answer']} "
             + " ".join(r["perturbed_answer"]) for r in ROWS]
    texts += [f"{r['question']} {r['answer']} {' '.join(r['perturbed_answer'])}"
              for s in ("real_authors", "world_facts") for r in SETS[s]]
    texts += list(U.IDK_ANSWERS)
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    t.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=t, pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>", clean_up_tokenization_spaces=False)
    tok.padding_side = "left"
    return tok


@pytest.fixture(scope="module")
def tiny():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = _tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=128, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before, model):
    after = model.state_dict()
    return sorted(k for k in before if not torch.equal(before[k], after[k]))


# ---- pure metric functions against hand computations ----------------------------------------

def test_truth_ratio_and_its_two_aggregators():
    correct = [-1.0, -2.0]
    wrong = [[-1.0, -3.0], [-2.0, -2.0]]
    tr = M.truth_ratio_from_logprobs(correct, wrong)
    # item 0: exp(mean(-1, -3)) / exp(-1) = e^-1 ; item 1: e^-2 / e^-2 = 1
    assert tr == pytest.approx([math.exp(-1), 1.0], rel=1e-8)
    assert M.aggregate_truth_ratio(tr, "closer_to_1_better") == pytest.approx((math.exp(-1) + 1) / 2)
    assert M.aggregate_truth_ratio(tr, "true_better") == pytest.approx((1 - math.exp(-1)) / 2)
    # R > 1 (a perturbation likelier than the truth): min(R, 1/R), and 0 for true_better
    assert M.aggregate_truth_ratio([4.0], "closer_to_1_better") == pytest.approx(0.25)
    assert M.aggregate_truth_ratio([4.0], "true_better") == 0.0
    # ragged option lists: NaN padding is ignored
    assert M.truth_ratio_from_logprobs([0.0], [[-2.0, np.nan]])[0] == pytest.approx(math.exp(-2))
    with pytest.raises(ValueError, match="aggregator"):
        M.aggregate_truth_ratio(tr, "mean")


def test_probability_and_probability_with_options():
    assert M.probability_from_logprobs([-1.0, -0.5]) == pytest.approx([math.exp(-1), math.exp(-0.5)])
    p = M.probability_with_options([-1.0], [[-2.0, -3.0]])
    e = math.exp
    assert p[0] == pytest.approx(e(-1) / (e(-1) + e(-2) + e(-3)))


def test_forget_quality_is_the_ks_p_value():
    from scipy.stats import ks_2samp

    a = [0.31, 0.52, 0.74, 0.9, 1.3, 0.45, 0.66]
    b = [0.12, 0.2, 0.28, 0.35, 0.5, 0.41]
    fq = M.forget_quality_from_truth_ratios(a, b)
    assert fq == ks_2samp(a, b).pvalue
    # the older open-unlearning convention (1/R on both sides) gives the same p-value
    assert fq == pytest.approx(ks_2samp(1 / np.array(a), 1 / np.array(b)).pvalue)
    assert M.forget_quality_from_truth_ratios(a, a) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        M.forget_quality_from_truth_ratios([], b)


def test_model_utility_is_the_harmonic_mean():
    parts = [0.9, 0.5, 0.25, 0.8, 0.6, 0.4, 0.7, 0.3, 0.2]
    assert M.model_utility_from_parts(parts) == pytest.approx(9 / sum(1 / x for x in parts))
    assert M.model_utility_from_parts({"a": 0.5, "b": 0.25}) == pytest.approx(1 / 3)
    assert M.model_utility_from_parts([0.5, 0.0, 1.0]) == 0.0
    with pytest.raises(ValueError):
        M.model_utility_from_parts([0.5, -0.1])


def vocab_moments(vocab_logprobs) -> tuple[np.ndarray, np.ndarray]:
    """``(μ, σ²)`` per position of a ``[T, V]`` matrix of next-token log-probabilities:
    ``μ = Σ_v p_v log p_v``, ``σ² = Σ_v p_v (log p_v)² − μ²`` (Min-K%++'s moments)."""
    lp = torch.as_tensor(np.asarray(vocab_logprobs), dtype=torch.float64)
    p = lp.exp()
    mu = (p * lp).sum(-1)
    var = (p * lp.square()).sum(-1) - mu.square()
    return mu.numpy(), var.numpy()


def test_min_k_and_min_k_plus_plus_by_hand():
    lp = [-1.0, -5.0, -2.0, -0.5, -3.0]
    assert M.min_k(lp, 0.4) == pytest.approx(4.0)  # int(5·0.4) = 2 lowest: -5, -3
    assert M.min_k(lp, 0.1) == pytest.approx(5.0)  # at least one token
    assert M.min_k([], 0.4) == 0.0
    # two positions over a 3-word vocabulary
    probs = [[0.7, 0.2, 0.1], [0.4, 0.4, 0.2]]
    vocab_lp = np.log(probs)
    mu, var = vocab_moments(vocab_lp)
    for t, row in enumerate(probs):
        m = sum(p * math.log(p) for p in row)
        assert mu[t] == pytest.approx(m)
        assert var[t] == pytest.approx(sum(p * math.log(p) ** 2 for p in row) - m * m)
    tok_lp = [math.log(0.2), math.log(0.4)]  # the tokens actually there
    z = [(tok_lp[t] - mu[t]) / math.sqrt(var[t]) for t in range(2)]
    assert M.min_k_plus_plus(tok_lp, mu, var, k=0.5) == pytest.approx(-min(z))
    assert M.min_k_plus_plus(tok_lp, mu, var, k=1.0) == pytest.approx(-sum(z) / 2)
    # a peaked distribution: variance clamped at 1e-6
    assert M.min_k_plus_plus([-0.1], [-0.1 + 1e-3], [0.0], k=1.0) == pytest.approx(1e-3 / 1e-3)


def test_truth_ratio_floor_is_flagged_where_it_decides():
    """Issue 23: a correct answer at probability ~1e-13 gets a truth ratio set by the
    +1e-10, not by the model (here the model prefers the correct answer 1.3:1, yet R is
    0.0013); the flag marks that item and only that one."""
    correct = np.log([1e-13, 0.5, 5e-8])
    wrong = np.log([[1.3e-13], [0.1], [1e-8]])
    r = M.truth_ratio_from_logprobs(correct, wrong)
    assert r[0] == pytest.approx(1.3e-13 / (1e-13 + 1e-10))  # 0.0013: the floor's number
    assert r[0] < 0.01 and 1.3e-13 / 1e-13 > 1
    assert M.truth_ratio_floored(correct).tolist() == [True, False, False]
    assert M.truth_ratio_floored(correct, share=0.001).tolist() == [True, False, True]


def test_mia_auc_convention_and_privleak():
    assert M.mia_auc([1.0, 2.0], [3.0, 4.0]) == 1.0  # forget looks familiar (lower loss)
    assert M.mia_auc([3.0, 4.0], [1.0, 2.0]) == 0.0
    assert M.mia_auc([1.0, 3.0], [2.0, 4.0]) == pytest.approx(0.75)
    assert M.privleak(0.8, 0.5) == pytest.approx((0.2 - 0.5) / 0.5 * 100)  # -60: under-unlearned
    assert M.privleak(0.3, 0.5) == pytest.approx(40.0)
    assert M.privleak(0.62, 0.62) == pytest.approx(0.0)


def test_mia_scores_use_all_tokens_for_loss_and_drop_the_last_for_min_k():
    st = [{"logprobs": np.array([-1.0, -4.0, -2.0, -9.0]), "mu": np.zeros(4), "var": np.ones(4)}]
    assert S.mia_scores(st, "loss") == pytest.approx([4.0])
    assert S.mia_scores(st, "min_k", k=0.4) == pytest.approx([4.0])  # of -1,-4,-2: int(1.2)=1
    assert S.mia_scores(st, "min_k_plus_plus", k=1.0) == pytest.approx([7 / 3])
    with pytest.raises(ValueError, match="attack"):
        S.mia_scores(st, "zlib")


# ---- the whole evaluation on a tiny random model -------------------------------------------

def test_evaluate_unlearning_on_a_tiny_model(tiny):
    model, tok = tiny
    res = S.evaluate_unlearning(model, tok, SETS, max_new_tokens=6, batch_size=8)
    for key in ("model_utility", "forget_truth_ratio", "forget_rouge", "forget_prob", "privleak",
                "mia_auc", "mia_loss_auc", "mia_min_k_plus_plus_auc"):
        assert isinstance(res[key], float) and math.isfinite(res[key]), key
    assert res["forget_quality"] is None and "retain" in res["forget_quality_note"]
    assert len(res["forget_truth_ratios"]) == len(SETS["forget"])
    assert 0.0 <= res["forget_truth_ratio_floored"] <= 1.0
    assert len(res["model_utility_parts"]) == 9
    assert res["model_utility"] == pytest.approx(
        M.model_utility_from_parts([res[k] for k in res["model_utility_parts"]]))
    assert res["privleak_retain_auc"] == 0.5
    assert res["privleak"] == pytest.approx(M.privleak(res["mia_min_k_auc"], 0.5))

    # the first forget item's truth ratio, by hand from batched log-probabilities
    r = SETS["forget"][0]
    pairs = [format_example(tok, r["question"], a) for a in [r["paraphrased_answer"]] + r["perturbed_answer"]]
    lp = response_logprobs(model, tok, [p for p, _ in pairs], [c for _, c in pairs], reduce="mean")
    lp = lp.double().numpy()
    assert res["forget_truth_ratios"][0] == pytest.approx(
        math.exp(lp[1:].mean()) / (math.exp(lp[0]) + 1e-10), rel=1e-4)
    pairs = [format_example(tok, x["question"], x["answer"]) for x in SETS["forget"]]
    lp = response_logprobs(model, tok, [p for p, _ in pairs], [c for _, c in pairs], reduce="mean")
    assert res["forget_prob"] == pytest.approx(float(lp.double().exp().mean()), rel=1e-4)

    # against itself as the retain model: identical truth ratios, same AUC
    again = S.evaluate_unlearning(model, tok, SETS, S.retain_reference_from(res),
                                  max_new_tokens=6, batch_size=3)
    assert again["forget_quality"] == pytest.approx(1.0)
    assert again["privleak"] == pytest.approx(0.0, abs=1e-6)
    assert again["forget_truth_ratios"] == pytest.approx(res["forget_truth_ratios"], rel=1e-4)


def test_evaluate_unlearning_checks_its_sets(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="required"):
        S.evaluate_unlearning(model, tok, {"forget": SETS["forget"]})
    with pytest.raises(ValueError, match="unknown sets"):
        S.evaluate_unlearning(model, tok, {**SETS, "extra": []})
    bad = [dict(SETS["forget"][0], perturbed_answer=[])]
    with pytest.raises(ValueError, match="perturbed_answer"):
        S.evaluate_unlearning(model, tok, {"forget": bad, "retain": SETS["retain"]})
    # optional sets left out: utility over retain only, no MIA
    res = S.evaluate_unlearning(model, tok, {"forget": SETS["forget"], "retain": SETS["retain"]},
                                max_new_tokens=4)
    assert res["model_utility_parts"] == ["retain_prob", "retain_rouge", "retain_truth_ratio"]
    assert res["mia_auc"] is None and res["privleak"] is None


def test_answer_token_stats_agree_with_response_logprobs(tiny):
    model, tok = tiny
    rows = SETS["forget"] + SETS["holdout"]
    st = S.answer_token_stats(model, tok, rows, batch_size=3)
    pairs = [format_example(tok, r["question"], r["answer"]) for r in rows]
    lp = response_logprobs(model, tok, [p for p, _ in pairs], [c for _, c in pairs], reduce="sum")
    for s, want, (_, c) in zip(st, lp.tolist(), pairs):
        assert len(s["logprobs"]) == len(tok(c, add_special_tokens=False)["input_ids"])
        assert s["logprobs"].sum() == pytest.approx(want, rel=1e-4)
        assert np.all(s["var"] > -1e-6) and np.all(s["mu"] <= 1e-6)


# ---- the registry ---------------------------------------------------------------------------------

ALL = ("ga", "graddiff", "npo", "simnpo", "idkdpo", "rmu", "lunar")


def test_every_registered_method_is_one_complete_class():
    from dataclasses import fields

    from kbnb.unlearning.base import ClosedFormMethod, GradientMethod, UnlearningMethod
    assert tuple(U.UNLEARNING_METHODS) == ALL  # registration order: the chapter's order
    for name, cls in U.UNLEARNING_METHODS.items():
        assert issubclass(cls, UnlearningMethod) and cls.name == name
        assert cls.display_name and cls.source and cls.summary
        for f in fields(cls):  # every parameter has a check
            assert f.metadata["check"] is not None, (name, f.name)
        m = cls()  # the defaults pass their own checks
        assert m.as_dict() == cls.defaults()
        with pytest.raises(AttributeError):  # parameters are frozen
            m.name_of_nothing = 1
        # a loss (gradient methods) or an edit of its own (closed form)
        if issubclass(cls, GradientMethod):
            assert cls.loss is not GradientMethod.loss
        else:
            assert issubclass(cls, ClosedFormMethod) and cls.edit is not ClosedFormMethod.edit
    assert issubclass(U.UNLEARNING_METHODS["lunar"], ClosedFormMethod)
    assert not U.UNLEARNING_METHODS["ga"].needs_retain and U.UNLEARNING_METHODS["npo"].needs_retain
    assert U.UNLEARNING_METHODS["npo"].names() == ["beta", "gamma", "alpha"]
    assert U.UNLEARNING_METHODS["npo"]().shown_params() == {"beta": 0.1, "gamma": 1.0, "alpha": 1.0}
    assert U.UNLEARNING_METHODS["idkdpo"]().shown_params()["idk_answers"] == list(U.IDK_ANSWERS)
    assert U.UNLEARNING_METHODS["lunar"](ref_rows=[{"question": "q"}]).shown_params() == {
        "layer": None, "layer_frac": 0.7, "coeff": 1.0, "ridge": 1e-6, "rows": "last",
        "n_ref_rows": 1}


def test_each_method_declares_its_tuning_grid_on_its_fields():
    grids = {name: cls.tuning_grid() for name, cls in U.UNLEARNING_METHODS.items()}
    assert grids == {"ga": {}, "graddiff": {"alpha": (1.0, 5.0)}, "npo": {"beta": (0.1, 0.5)},
                     "simnpo": {"gamma": (0.125, 1.0)}, "idkdpo": {"beta": (0.1, 0.5)},
                     "rmu": {"steering_scale": (2.0, 8.0)}, "lunar": {"coeff": (1.0, 2.0, 4.0)}}
    for name, cls in U.UNLEARNING_METHODS.items():  # the grid starts at the default
        assert all(cls.defaults()[k] == v[0] for k, v in grids[name].items())


def test_a_bad_parameter_names_itself_and_the_allowed_values():
    cases = [("npo", "beta", -1.0, "beta=-1.0: allowed a finite number in (0, inf]"),
             ("graddiff", "alpha", float("nan"), "alpha=nan: allowed a finite number in [0, inf]"),
             ("simnpo", "delta", float("inf"), "delta=inf: allowed a finite number"),
             ("rmu", "layer_frac", 1.5, "layer_frac=1.5: allowed a finite number in [0, 1]"),
             ("rmu", "steering_coeff", 0.0, "steering_coeff=0.0: allowed a finite number in (0"),
             ("rmu", "layer", 1.0, "layer=1.0: allowed an integer"),
             ("idkdpo", "idk_answers", "I don't know.", ": allowed a non-empty list of strings"),
             ("lunar", "rows", "all", "rows='all': allowed 'prompt', 'distinct', 'last'"),
             ("lunar", "ref_rows", "Who is X?", "ref_rows: allowed a list of rows with 'question'")]
    for method, k, v, msg in cases:
        with pytest.raises(ValueError, match=re.escape(msg)):
            U.UNLEARNING_METHODS[method](**{k: v})
    assert U.UNLEARNING_METHODS["rmu"](steering_coeff=None).steering_coeff is None
    with pytest.raises(ValueError, match="method='npo' has no parameter.s. bet; allowed: beta, gamma, alpha"):
        U.UNLEARNING_METHODS["npo"].from_dict({"bet": 0.1})
    with pytest.raises(ValueError, match="method='ga' has no parameter.s. beta; allowed: none"):
        U.UNLEARNING_METHODS["ga"].from_dict({"beta": 0.1})
    assert U.UNLEARNING_METHODS["npo"].from_dict({"beta": 0.5}).beta == 0.5


def test_an_unknown_method_lists_the_registered_ones():
    from kbnb.unlearning.base import method_class
    with pytest.raises(ValueError, match="method='fancy': allowed " + ", ".join(map(repr, ALL))):
        method_class("fancy")
    assert method_class("npo") is U.NPO


def test_register_refuses_duplicates_and_unchecked_parameters():
    from kbnb.core.fields import number
    from kbnb.unlearning.base import GradientMethod, UnlearningMethod, register

    class Again(GradientMethod):
        name, display_name = "npo", "NPO again"

    with pytest.raises(ValueError, match="registered twice"):
        register(Again)

    class Unchecked(GradientMethod):
        name, display_name = "unchecked", "Unchecked"
        beta: float = 0.1

    with pytest.raises(ValueError, match="parameter beta needs a check"):
        register(Unchecked)

    class OffGrid(GradientMethod):
        name, display_name = "offgrid", "OffGrid"
        beta: float = number(0.1, 0, lo_open=True, grid=(0.5, 0.1))

    with pytest.raises(ValueError, match="grid of beta.*must start at its default 0.1"):
        register(OffGrid)

    class BadGrid(GradientMethod):
        name, display_name = "badgrid", "BadGrid"
        beta: float = number(0.1, 0, lo_open=True, grid=(0.1, -1.0))

    with pytest.raises(ValueError, match="beta=-1.0: allowed a finite number in .0, inf]"):
        register(BadGrid)

    class Neither(UnlearningMethod):
        name, display_name = "neither", "Neither"

    with pytest.raises(ValueError, match="subclass GradientMethod or ClosedFormMethod"):
        register(Neither)
    assert not {"unchecked", "offgrid", "badgrid", "neither"} & set(U.UNLEARNING_METHODS)


def test_a_new_method_is_one_class(tiny):
    """A toy method: its class is all it takes to train it, show it and tune it."""
    from kbnb.core.fields import number
    from kbnb.unlearning.base import GradientMethod, register
    from kbnb.unlearning.losses import ga_loss

    try:
        @register
        class ScaledAscent(GradientMethod):
            """``scale`` × :func:`~kbnb.unlearning.losses.ga_loss` on the forget rows."""

            name, display_name, needs_retain = "scaled_ga", "ScaledGA", False
            source, summary = "a test", "gradient ascent, scaled"

            scale: float = number(1.0, 0, lo_open=True, grid=(1.0, 2.0))

            def loss(self, state, idx, ridx):
                lp, n = U.completion_logprobs(state.policy, state.tok, U.select(state.forget, idx))
                f = self.scale * ga_loss(lp, n)
                return f, {"forget_losses": f.item(), "retain_losses": 0.0}

        model, tok = tiny
        assert T.grid("scaled_ga", lrs=[1e-3]) == [{"lr": 1e-3, "scale": 1.0},
                                                    {"lr": 1e-3, "scale": 2.0}]
        new, log = U.unlearn("scaled_ga", model, tok, SETS["forget"], steps=2, lr=1e-2,
                             batch_size=2, scale=2.0)
        assert log["params"] == {"scale": 2.0} and len(log["losses"]) == 2
        _, ga = U.unlearn("ga", model, tok, SETS["forget"], steps=1, lr=1e-2, batch_size=2)
        assert log["forget_losses"][0] == pytest.approx(2 * ga["forget_losses"][0])
        with pytest.raises(ValueError, match="scale=0: allowed a finite number in .0, inf]"):
            U.unlearn("scaled_ga", model, tok, SETS["forget"], scale=0)
    finally:
        U.UNLEARNING_METHODS.pop("scaled_ga", None)


# ---- the shared loop and its per-step hook -------------------------------------------------------

def _pairs(tok, rows):
    return [format_example(tok, r["question"], r["answer"]) for r in rows]


def test_train_copy_calls_its_hook_before_and_after_every_step(tiny):
    from kbnb.unlearning.loop import train_copy
    model, tok = tiny
    before = _state(model)
    method = U.UNLEARNING_METHODS["graddiff"]()
    seen = []

    def hook(step, policy):
        assert policy is not model and policy.training
        seen.append((step, policy.lm_head.weight.detach().clone()))

    f, r = _pairs(tok, SETS["forget"]), _pairs(tok, SETS["retain"])
    new, log = train_copy(model, tok, method, f, r, steps=3, lr=1e-2, seed=1, batch_size=2,
                          on_step=hook)
    assert [s for s, _ in seen] == [0, 1, 2, 3]
    assert torch.equal(seen[0][1], model.lm_head.weight)  # step 0: the untouched copy
    assert all(not torch.equal(a, b) for (_, a), (_, b) in zip(seen, seen[1:]))  # one update each
    assert torch.equal(seen[-1][1], new.lm_head.weight) and not new.training
    assert _changed(before, model) == [] and all(p.grad is None for p in model.parameters())
    assert len(log["losses"]) == len(log["forget_losses"]) == len(log["retain_losses"]) == 3
    # the hook only watches: the same run without it trains the same weights
    again, log2 = train_copy(model, tok, method, f, r, steps=3, lr=1e-2, seed=1, batch_size=2)
    assert log2["losses"] == log["losses"] and _changed(_state(new), again) == []


def test_the_registry_and_the_npo_toy_share_the_loop(tiny):
    """The NPO toy's unlearn_and_track is train_copy with its TrackedLoss and a scoring
    hook: its ga run without a retain term trains exactly like a hand-made loop call."""
    from kbnb.unlearning import tracking
    from kbnb.unlearning.loop import train_copy
    model, tok = tiny
    row = SETS["forget"][0]
    tracked = [row["answer"], "Somewhere else."]
    h = tracking.unlearn_and_track(model, tok, SETS["forget"], row["question"], tracked,
                                   loss="ga", lr=1e-2, steps=5, eval_every=2, batch_size=2,
                                   seed=2, progress=False, after=_state)
    assert h["steps"] == [0, 2, 4, 5] and len(h["logps"]) == 4 and len(h["losses"]) == 5
    assert h["logps"][0] == tracking.score_responses(model, tok, row["question"], tracked).tolist()
    assert h["logps"][-1][0] < h["logps"][0][0]  # the watched answer fell
    new, log = train_copy(model, tok, tracking.TrackedLoss("ga"), _pairs(tok, SETS["forget"]),
                          steps=5, lr=1e-2, seed=2, batch_size=2)
    assert log["losses"] == h["losses"] and log["forget_logp"] == h["forget_logp"]
    assert _changed(h["after"], new) == []


# ---- unlearning methods -------------------------------------------------------------------------

def test_registry_rejects_unknown_methods_and_parameters(tiny):
    model, tok = tiny
    with pytest.raises(ValueError) as err:
        U.unlearn("fancy", model, tok, SETS["forget"], SETS["retain"])
    for name in ("ga", "graddiff", "npo", "simnpo", "idkdpo", "rmu", "lunar"):
        assert repr(name) in str(err.value)
    assert set(U.UNLEARNING_METHODS) == {"ga", "graddiff", "npo", "simnpo", "idkdpo", "rmu", "lunar"}
    with pytest.raises(ValueError, match="beta"):
        U.unlearn("npo", model, tok, SETS["forget"], SETS["retain"], bet=0.1)
    bad = [dict(steps=0), dict(lr=0.0), dict(lr=float("nan")), dict(batch_size=0),
           dict(beta=-1.0), dict(steps=1.5)]
    for kw in bad:
        with pytest.raises(ValueError):
            U.unlearn("npo", model, tok, SETS["forget"], SETS["retain"], **kw)
    with pytest.raises(ValueError, match="retain"):
        U.unlearn("graddiff", model, tok, SETS["forget"], [])
    with pytest.raises(ValueError, match="ref_rows"):
        U.unlearn("lunar", model, tok, SETS["forget"], SETS["retain"])
    with pytest.raises(ValueError, match="layer"):
        U.unlearn("rmu", model, tok, SETS["forget"], SETS["retain"], layer=5)


@pytest.mark.parametrize("method", ["ga", "graddiff", "npo", "simnpo", "idkdpo", "rmu"])
def test_every_trained_method_changes_the_weights_in_two_steps(tiny, method):
    model, tok = tiny
    before = _state(model)
    new, log = U.unlearn(method, model, tok, SETS["forget"], SETS["retain"], steps=2, lr=1e-2,
                         batch_size=2, seed=0)
    assert _changed(before, model) == []  # the given model is the frozen reference
    changed = _changed(before, new)
    assert changed
    assert len(log["losses"]) == len(log["forget_losses"]) == 2
    assert all(math.isfinite(x) for x in log["losses"])
    assert log["method"] == method and log["steps"] == 2
    if method == "rmu":  # only the down-projections of layers l-2..l (l = round(0.25·1) = 0)
        assert changed == ["model.layers.0.mlp.down_proj.weight"]
        assert log["layer"] == 0 and log["steering_coeff_used"] > 0


def test_rmu_trains_layers_l_minus_2_to_l(tiny):
    model, tok = tiny
    before = _state(model)
    new, log = U.unlearn("rmu", model, tok, SETS["forget"], SETS["retain"], steps=2, lr=1e-2,
                         layer=1, steering_coeff=5.0)
    assert _changed(before, new) == ["model.layers.0.mlp.down_proj.weight",
                                     "model.layers.1.mlp.down_proj.weight"]
    assert log["steering_coeff_used"] == 5.0


def test_lunar_changes_one_down_projection_only(tiny):
    model, tok = tiny
    before = _state(model)
    ref = [{"question": q} for q in ("How do I pick a lock?", "Tell me a secret.",
                                     "Who is Zorblax?")]
    new, log = U.unlearn("lunar", model, tok, SETS["forget"], SETS["retain"], ref_rows=ref)
    assert _changed(before, model) == []
    assert _changed(before, new) == ["model.layers.1.mlp.down_proj.weight"]  # round(0.7·1) = 1
    assert log["closed_form"] and log["layer"] == 1 and log["losses"] == []
    new0, _ = U.unlearn("lunar", model, tok, SETS["forget"], SETS["retain"], ref_rows=ref, layer=0)
    assert _changed(before, new0) == ["model.layers.0.mlp.down_proj.weight"]


def test_methods_are_deterministic_given_the_seed(tiny):
    model, tok = tiny
    a, la = U.unlearn("idkdpo", model, tok, SETS["forget"], SETS["retain"], steps=2, lr=1e-2,
                      batch_size=2, seed=3)
    b, lb = U.unlearn("idkdpo", model, tok, SETS["forget"], SETS["retain"], steps=2, lr=1e-2,
                      batch_size=2, seed=3)
    assert la["losses"] == lb["losses"] and la["idk_answers_used"] == lb["idk_answers_used"]
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_gradient_ascent_raises_the_forget_nll(tiny):
    model, tok = tiny
    pairs = [format_example(tok, r["question"], r["answer"]) for r in SETS["forget"]]

    def nll(m):
        lp = response_logprobs(m, tok, [p for p, _ in pairs], [c for _, c in pairs], reduce="mean")
        return -float(lp.mean())

    new, log = U.unlearn("ga", model, tok, SETS["forget"], steps=5, lr=5e-2, batch_size=4)
    assert nll(new) > nll(model) + 1.0
    assert log["forget_losses"][-1] < log["forget_losses"][0]  # −NLL falls


# ---- the chapter's helpers -----------------------------------------------------------------

def test_forget_quality_from_log_probabilities_against_ks_2samp():
    """Truth ratios from a fixed small set of mean log-probabilities, then the KS p-value."""
    from scipy.stats import ks_2samp
    para = np.array([-0.1, -0.2, -0.3, -0.5, -1.0])
    wrong = np.array([[-2.0, -3.0], [-1.0, -1.0], [-0.3, -0.6], [-4.0, -2.0], [-1.0, -3.0]])
    tr = M.truth_ratio_from_logprobs(para, wrong)
    by_hand = [math.exp((w[0] + w[1]) / 2) / (math.exp(p) + 1e-10) for p, w in zip(para, wrong)]
    assert tr == pytest.approx(by_hand)
    retain_tr = np.array([0.9, 1.1, 0.8, 1.3, 1.0, 0.7])
    assert M.forget_quality_from_truth_ratios(tr, retain_tr) == ks_2samp(tr, retain_tr).pvalue
    assert M.forget_quality_from_truth_ratios(retain_tr, retain_tr) == 1.0
    got = S.evaluate_against({"forget_truth_ratios": tr, "mia_auc": 0.8, "mia_attack": "min_k"},
                             {"forget_truth_ratios": retain_tr, "mia_min_k_auc": 0.6})
    assert got["forget_quality"] == ks_2samp(tr, retain_tr).pvalue
    assert got["privleak"] == pytest.approx((0.6 - 0.8) / 0.4 * 100)


def test_chapter_refuses_unknown_methods_with_the_list():
    assert U.check_methods(["npo", "rmu"]) == ["npo", "rmu"]
    with pytest.raises(ValueError, match="'sgd' is not a method; allowed 'ga', 'graddiff'"):
        U.check_methods(["npo", "sgd"])
    with pytest.raises(ValueError, match="listed twice"):
        U.check_methods(["npo", "npo"])


def test_organism_sets_keep_their_roles_apart():
    from kbnb.organism.world import make_world
    w = make_world(0)
    s = tofu_sets.organism_sets(w, "forget10", n_retain=90)
    authors = {k: {r["author"] for r in v} for k, v in s.items()}
    assert len(s["forget"]) == 20 * 9 and len(s["retain"]) == 90
    assert len(s["holdout"]) == len(s["forget"])
    for a, b in [("forget", "retain"), ("forget", "holdout"), ("forget", "real_authors"),
                 ("retain", "real_authors"), ("holdout", "retain")]:
        assert not authors[a] & authors[b], (a, b)
    assert all(r["group"] == "known" for r in s["retain"] + s["forget"])
    assert all(r["group"] == "unseen" for r in s["holdout"])
    train = tofu_sets.organism_retain_rows(w, "forget10")
    assert not {r["author"] for r in train} & authors["forget"]
    with pytest.raises(ValueError, match="forget_split"):
        tofu_sets.organism_sets(w, "forget20")


def test_reference_numbers_are_sourced():
    from kbnb.chapters import unlearning as C
    assert C.REFERENCE_TOFU_FORGET10["npo"][:2] == (0.02, 0.46)
    assert "open-unlearning" in C.REFERENCE_SOURCE
    assert set(C.REFERENCE_TOFU_FORGET10) - {"finetuned", "retain"} <= set(U.UNLEARNING_METHODS)


def test_chapter_names_methods_by_their_classes():
    from kbnb.chapters import unlearning as C
    assert C.display_name("ga") == "GradAscent" and C.display_name("idkdpo") == "IdkDPO"
    assert C.Params().method_list == list(U.UNLEARNING_METHODS)
    assert C.Params(methods="npo").run_params()["methods"] == ["npo"]
    with pytest.raises(ValueError, match="'sgd' is not a method; allowed 'ga'"):
        C.Params(methods=["sgd"])


# ---- per-method hyperparameter selection on validation rows (issue 23) ---------------------


def test_grid_is_each_methods_rates_times_its_knobs():
    assert [g["lr"] for g in T.grid("ga")] == list(T.GRID_LRS)
    npo = T.grid("npo")
    assert len(npo) == 6 and {g["beta"] for g in npo} == {0.1, 0.5}
    assert len(T.grid("npo", knobs=False)) == 3 and "beta" not in T.grid("npo", knobs=False)[0]
    lunar = T.grid("lunar")
    assert {g["lr"] for g in lunar} == {None} and [g["coeff"] for g in lunar] == [1.0, 2.0, 4.0]
    assert T.grid("simnpo", lrs=[1e-3]) == [{"lr": 1e-3, "gamma": 0.125}, {"lr": 1e-3, "gamma": 1.0}]
    for bad in ([], [0.0], ["x"], [True]):
        with pytest.raises(ValueError, match="lrs"):
            T.grid("ga", bad)
    with pytest.raises(ValueError, match="not a method"):
        T.grid("sgd")
    assert T.shown({"lr": 1e-3, "beta": 0.5}) == "lr 1e-03, beta 0.5"


def test_choose_takes_the_best_forget_quality_that_keeps_utility():
    pts = [{"forget_quality": 0.9, "utility": 0.50},   # forgets, but breaks the model
           {"forget_quality": 0.2, "utility": 0.95},
           {"forget_quality": 0.4, "utility": 0.91},   # the best eligible one
           {"forget_quality": 1e-9, "utility": 1.00}]
    i, why = T.choose(pts, utility0=1.0)
    assert i == 2 and "3 of 4 settings" in why
    i, why = T.choose(pts[:1] + [{"forget_quality": 0.8, "utility": 0.6}], utility0=1.0)
    assert i == 1 and "no setting keeps" in why  # none eligible: the least damage
    with pytest.raises(ValueError):
        T.choose([], 1.0)


def test_tune_trains_every_setting_and_reads_only_validation_rows(tiny):
    model, tok = tiny
    val = {"forget": [dict(r, question=r["question"].replace("Where", "In which town"))
                      for r in SETS["forget"]], "retain": SETS["retain"]}
    ref = S.evaluate_validation(model, tok, val)  # the untouched model as a stand-in retain model
    assert ref["forget_quality"] is None and 0 < ref["utility"] <= 1
    base = S.evaluate_validation(model, tok, val, ref)
    assert base["forget_quality"] == pytest.approx(1.0)  # the same truth ratios
    res = T.tune("npo", model, tok, SETS["forget"], SETS["retain"], val, ref, base["utility"],
                 steps=2, batch_size=2, lrs=[1e-4, 1e-2], knobs=False)
    assert [q["setting"]["lr"] for q in res["points"]] == [1e-4, 1e-2]
    assert res["setting"] == res["points"][res["chosen"]]["setting"]
    assert all(0 <= q["forget_quality"] <= 1 and q["utility"] >= 0 for q in res["points"])
    with pytest.raises(ValueError, match="val_reference"):
        T.tune("npo", model, tok, SETS["forget"], SETS["retain"], val, None, 1.0, steps=1)


def test_organism_validation_rows_are_disjoint_from_the_evaluation(world):
    ev = tofu_sets.organism_sets(world, "forget10", 90)
    val = tofu_sets.organism_validation_sets(world, "forget10", 90)
    assert len(val["forget"]) == len(ev["forget"]) and len(val["retain"]) == 90
    assert not {r["question"] for r in val["forget"]} & {r["question"] for r in ev["forget"]}
    assert [r["answer"] for r in val["forget"]] == [r["answer"] for r in ev["forget"]]
    assert not {r["question"] for r in val["retain"]} & {r["question"] for r in ev["retain"]}
    with pytest.raises(ValueError, match="n_retain"):
        tofu_sets.organism_validation_sets(world, "forget10", 600)
