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
