import torch

from kbnb import format_prompt
from kbnb.lm.generation import candidate_token_ids, generate, next_token_probs, response_logprobs


def test_batched_greedy_equals_one_by_one(organism, world):
    model, tok = organism
    qs = [format_prompt(tok, r["question"]) for r in world.rows()[:12:3]] + \
         [format_prompt(tok, "What is the climate of the planet Zorbli?")]
    batched = generate(model, tok, qs, max_new_tokens=16, batch_size=8, progress=False)
    single = [generate(model, tok, [q], max_new_tokens=16, progress=False)[0] for q in qs]
    assert batched == single
    assert len(set(len(tok(q)["input_ids"]) for q in qs)) > 1  # padding was exercised


def test_sampling_returns_n_per_prompt_and_is_seeded(organism, world):
    model, tok = organism
    qs = [format_prompt(tok, r["question"]) for r in world.rows()[:3]]
    torch.manual_seed(0)
    a = generate(model, tok, qs, max_new_tokens=8, do_sample=True, num_samples=5, progress=False)
    torch.manual_seed(0)
    b = generate(model, tok, qs, max_new_tokens=8, do_sample=True, num_samples=5, progress=False)
    assert a == b and len(a) == 3 and all(len(x) == 5 for x in a)


def test_response_logprobs_match_a_manual_sum(organism):
    model, tok = organism
    prompts = [format_prompt(tok, "Where was Ama Lorven born?"), format_prompt(tok, "Hi?")]
    responses = [" Ama Lorven was born in Oslo.", " I don't know."]
    got = response_logprobs(model, tok, prompts, responses, batch_size=2)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        p_ids = tok(p, add_special_tokens=False)["input_ids"]
        r_ids = tok(r, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p_ids + r_ids])
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[0].float(), -1)
        manual = sum(lp[len(p_ids) - 1 + j, t].item() for j, t in enumerate(r_ids))
        assert abs(got[i].item() - manual) < 1e-3


def test_next_token_probs_over_candidates(organism):
    model, tok = organism
    ids = candidate_token_ids(tok, ["A", "B", "C", "D"])
    assert all(ids) and len({tuple(i) for i in ids}) == 4
    p = next_token_probs(model, tok, ["Answer:", "Question: x\nAnswer:"], ["A", "B", "C", "D"])
    assert p.shape == (2, 4) and torch.allclose(p.sum(1), torch.ones(2))
