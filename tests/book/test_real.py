"""make book-real's recording: each executed chapter's metrics and parameters copied
beside RECORD.json (commit, date, library file hashes, seconds)."""
import json

import nbformat

from kbnb.book import real
from kbnb.report.runs import library_files


def _executed(path, run_dir, seconds):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kbnb"] = {"hash": "h", "params": {}, "seconds": seconds, "run_dir": run_dir}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def test_record_copies_metrics_and_params_and_keeps_earlier_chapters(tmp_path):
    run = tmp_path / "runs-real" / "lunar-abc"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text('{"metrics": {"headline": {}}}')
    (run / "params.json").write_text('{"model_name": "smollm2-tofu"}')
    _executed(tmp_path / "book" / "real" / "lunar.ipynb", "runs-real/lunar-abc", 12.5)
    _executed(tmp_path / "book" / "real" / "rait.ipynb", "runs-real/missing", 3.0)  # no metrics
    dest = real.record("book/real", "results/smollm2", models={"m": 1}, measured=None,
                       root=tmp_path)
    assert json.loads((dest / "lunar" / "params.json").read_text())["model_name"] == "smollm2-tofu"
    assert (dest / "lunar" / "metrics.json").exists() and not (dest / "rait").exists()
    doc = json.loads((dest / "RECORD.json").read_text())
    lunar = doc["chapters"]["lunar"]
    assert set(doc["chapters"]) == {"lunar"}
    assert (lunar["seconds"], lunar["run_dir"]) == (12.5, "runs-real/lunar-abc")
    assert doc["library_files"] == library_files() == lunar["library_files"]
    assert doc["models"] == {"m": 1} and doc["date"] and lunar["date"] == doc["date"]

    # a later run of another chapter keeps lunar's entry and the models
    run2 = tmp_path / "runs-real" / "npo_toy-1"
    run2.mkdir()
    (run2 / "metrics.json").write_text("{}")
    _executed(tmp_path / "book" / "real" / "npo_toy.ipynb", "runs-real/npo_toy-1", 4.0)
    record = dest / "RECORD.json"
    doc = json.loads(record.read_text())
    doc["chapters"]["lunar"]["date"] = "earlier"
    record.write_text(json.dumps(doc))
    doc = json.loads((real.record("book/real", "results/smollm2", root=tmp_path,
                                  only=["npo_toy"]) / "RECORD.json").read_text())
    assert set(doc["chapters"]) == {"lunar", "npo_toy"} and doc["models"] == {"m": 1}
    assert doc["chapters"]["lunar"]["date"] == "earlier"  # not run this time: its own stamp
    assert doc["chapters"]["npo_toy"]["date"] == doc["date"] != "earlier"


def test_a_chapter_keeps_the_stamp_of_its_execution(tmp_path):
    run = tmp_path / "runs-real" / "rait-1"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text("{}")
    _executed(tmp_path / "book" / "real" / "rait.ipynb", "runs-real/rait-1", 2.0)
    nb = nbformat.read(tmp_path / "book" / "real" / "rait.ipynb", as_version=4)
    nb.metadata["kbnb"]["stamp"] = {"commit": "c0ffee", "date": "when it ran",
                                    "library_files": {"kbnb/a.py": "0"}}
    nbformat.write(nb, tmp_path / "book" / "real" / "rait.ipynb")
    doc = json.loads((real.record("book/real", "results/smollm2", root=tmp_path)
                      / "RECORD.json").read_text())
    assert doc["chapters"]["rait"]["commit"] == "c0ffee"
    assert doc["chapters"]["rait"]["library_files"] == {"kbnb/a.py": "0"}
    assert doc["library_files"] == library_files()


def test_an_older_record_lends_its_stamp_to_its_chapters(tmp_path):
    dest = tmp_path / "results" / "smollm2"
    dest.mkdir(parents=True)
    (dest / "RECORD.json").write_text(json.dumps({
        "commit": "abc", "date": "then", "library_files": {"kbnb/x.py": "1"},
        "chapters": {"lunar": {"seconds": 1.0, "run_dir": "r"}}}))
    doc = json.loads((real.record("book/real", "results/smollm2", root=tmp_path, only=[])
                      / "RECORD.json").read_text())
    assert doc["chapters"]["lunar"] == {"seconds": 1.0, "run_dir": "r", "commit": "abc",
                                        "date": "then", "library_files": {"kbnb/x.py": "1"}}


def test_only_the_models_of_the_chosen_chapters_are_built_and_the_others_kept(tmp_path):
    params = {"rtuning": {"model_name": "smollm2-tofu-retain"},
              "unlearning": {"model_name": "smollm2-tofu", "retain_model": "smollm2-tofu-retain"},
              "lunar": {"model_name": "smollm2-tofu"}, "results": {"chapters_dir": "x"}}
    assert real.models_of(params, ["rtuning"]) == ["smollm2-tofu-retain"]
    assert real.models_of(params, ["unlearning", "results"]) == list(real.MODELS)
    assert real.models_of({"a": {"model_name": "my/model"}}, ["a"]) == ["my/model"]
    dest = tmp_path / "results" / "smollm2"
    dest.mkdir(parents=True)
    (dest / "RECORD.json").write_text(json.dumps({"models": {"a": 1, "b": 2}}))
    doc = json.loads((real.record("book/real", "results/smollm2", root=tmp_path, only=[],
                                  models={"b": 3}) / "RECORD.json").read_text())
    assert doc["models"] == {"a": 1, "b": 3}
