import pytest

from kbnb.data.loaders import find_data_dir, load_mmlu, load_refusal, load_tofu
from kbnb.data.splits import TOFU_SPLITS


def test_reads_real_tofu_mmlu_refusal(data_dir):
    forget = load_tofu("forget10", data_dir)
    assert len(forget) == 400 and {"question", "answer"} <= set(forget[0])
    pert = load_tofu("forget10", data_dir, perturbed=True)
    assert {"paraphrased_question", "perturbed_answer"} <= set(pert[0])
    mmlu = load_mmlu("test", data_dir)
    assert len({r["subject"] for r in mmlu}) == 57 and len(mmlu[0]["choices"]) == 4
    assert load_refusal("train", data_dir)[0]["question"]


def test_every_real_tofu_file_is_a_known_split(data_dir):
    """The split names kbnb allows are exactly the files real TOFU has, and each loads."""
    files = {p.stem for p in (data_dir / "tofu").glob("*.jsonl")}
    assert files == set(TOFU_SPLITS)
    for split in TOFU_SPLITS:
        assert load_tofu(split, data_dir)[0]["question"], split
    assert len(load_tofu("retain_perturbed", data_dir)) == 400


def test_data_dir_may_name_the_subfolder(data_dir):
    assert find_data_dir("mmlu", data_dir / "mmlu") == data_dir / "mmlu"
    assert len(load_mmlu("dev", data_dir / "mmlu")) == 285


def test_missing_data_dir_gives_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_dir=.*has no tofu data"):
        load_tofu("forget10", tmp_path / "nowhere")
    (tmp_path / "tofu").mkdir()
    (tmp_path / "tofu" / "forget10.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    with pytest.raises(FileNotFoundError, match="split='forget05' not in"):
        load_tofu("forget05", tmp_path)
    with pytest.raises(ValueError, match="split='forget7'"):
        load_tofu("forget7", tmp_path)


def test_environment_variable_is_used(tmp_path, monkeypatch):
    (tmp_path / "tofu").mkdir()
    (tmp_path / "tofu" / "forget01.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    monkeypatch.setenv("KBNB_DATA_DIR", str(tmp_path))
    assert load_tofu("forget01")[0]["answer"] == "a"


def test_tofu_authors_choice_gold_is_the_paraphrase_and_groups_follow_what_was_taught(data_dir):
    from kbnb.data.loaders import load_tofu, load_tofu_authors_choice
    perturbed = {r["question"]: r for s in ("retain_perturbed", "forget10_perturbed")
                 for r in load_tofu(s, data_dir)}
    taught = {q: 3 for q in list(perturbed)[:40]}
    rows = load_tofu_authors_choice(data_dir, taught, n_options=4, seed=0)
    assert len(rows) == 799  # 800 less "What is the full name of the author?" (two authors)
    assert len({r["question"] for r in rows}) == len(rows)
    for r in rows:
        src = perturbed[r["question"]]
        assert len(r["choices"]) == 4 and r["choices"][r["answer"]] == src["paraphrased_answer"]
        wrong = [c for i, c in enumerate(r["choices"]) if i != r["answer"]]
        assert all(c in src["perturbed_answer"] for c in wrong)
        assert (r["group"], r["exposure"]) == (("known", 3) if r["question"] in taught
                                               else ("unseen", 0))
    assert sum(r["group"] == "known" for r in rows) == 40
    assert len({r["answer"] for r in rows}) == 4  # the gold's position is shuffled
    assert len({r["author"] for r in rows}) == 40  # retain_perturbed's 20 and forget10's 20
    assert rows == load_tofu_authors_choice(data_dir, taught, n_options=4, seed=0)
    assert rows != load_tofu_authors_choice(data_dir, taught, n_options=4, seed=1)
    with pytest.raises(ValueError, match="n_options"):
        load_tofu_authors_choice(data_dir, taught, n_options=7)
