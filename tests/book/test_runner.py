"""The book runner: dependency order (from the chapters' SPEC), run folders passed on,
no stale page published."""
import json

import nbformat
import pytest

from kbnb import organism
from kbnb.book import runner as book
from kbnb.report.spec import ChapterSpec


def _notebook(path, params_src, body_src):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(params_src, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(body_src)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


WRITE = """
import json, pathlib, time
d = pathlib.Path(output_dir) / ("NAME-" + tag)
d.mkdir(parents=True, exist_ok=True)
(d / "metrics.json").write_text(json.dumps({"tag": tag, "up": UP}))
"""


@pytest.fixture
def root(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: x\n    chapters:\n"
        "      - file: book/chapters/b\n      - file: book/chapters/a\n"
        "      - file: book/chapters/c\n")
    _notebook(tmp_path / "notebooks" / "c.ipynb", 'tag = "c"\noutput_dir = "runs"',
              WRITE.replace("NAME", "c").replace("UP", "None"))
    _notebook(tmp_path / "notebooks" / "a.ipynb", 'tag = "one"\noutput_dir = "runs"',
              WRITE.replace("NAME", "a").replace("UP", "None"))
    _notebook(tmp_path / "notebooks" / "b.ipynb", 'tag = "b"\na_dir = ""\noutput_dir = "runs"',
              "import pathlib\nassert (pathlib.Path(a_dir) / 'metrics.json').exists(), a_dir\n"
              + WRITE.replace("NAME", "b").replace("UP", "a_dir"))
    (tmp_path / "book" / "params.yml").write_text("a: {}\nb: {}\nc: {}\n")
    monkeypatch.setattr(book, "spec_of", lambda n: ChapterSpec(
        title=n, depends={"a": "a_dir"} if n == "b" else {}))
    return tmp_path


def test_order_and_upstream():
    names = ["results", "tinyworld", "lunar_attacks", "lunar", "rait"]
    order = book.in_order(names)
    assert order.index("lunar") < order.index("lunar_attacks") and order[-1] == "results"
    assert book.upstream("results", names) == {n: None for n in names if n != "results"}
    assert book.upstream("lunar_attacks", names) == {"lunar": "lunar_dir"}


@pytest.mark.slow
def test_runner_passes_run_folders_and_refuses_stale_pages(root):
    args = ["--root", str(root), "--no-html"]
    book.main(args)  # runs a before b (b depends on a), though _toc.yml lists b first
    chapters = root / "book" / "chapters"
    meta_a = json.loads((chapters / "a.ipynb").read_text())["metadata"]["kbnb"]
    meta_b = json.loads((chapters / "b.ipynb").read_text())["metadata"]["kbnb"]
    assert meta_a["run_dir"] == "runs/a-one"
    assert meta_b["params"]["a_dir"] == "runs/a-one"
    from kbnb.report.runs import library_files
    assert meta_a["stamp"]["library_files"] == library_files() and meta_a["stamp"]["date"]
    assert json.loads((root / "runs" / "b-b" / "metrics.json").read_text())["up"] == "runs/a-one"

    # a changes: --only a re-executes a and, because b builds on it, b too
    _notebook(root / "notebooks" / "a.ipynb", 'tag = "two"\noutput_dir = "runs"',
              WRITE.replace("NAME", "a").replace("UP", "None"))
    book.main(args + ["--only", "a"])
    meta_b = json.loads((chapters / "b.ipynb").read_text())["metadata"]["kbnb"]
    assert meta_b["params"]["a_dir"] == "runs/a-two"

    # c (independent of a) changes, but only a is asked for: no stale c is published
    nb = nbformat.read(root / "notebooks" / "c.ipynb", as_version=4)
    nb.cells[0].source = 'tag = "c2"\noutput_dir = "runs"'
    nbformat.write(nb, root / "notebooks" / "c.ipynb")
    with pytest.raises(SystemExit, match="copies of c are missing or stale"):
        book.main(["--root", str(root), "--only", "a"])
    with pytest.raises(SystemExit, match="not in _toc.yml"):
        book.main(args + ["--only", "zzz"])


def _py(code):
    import sys
    return [sys.executable, "-c", code]


def _stamp(tmp_path, name, seconds=0.0):
    """A command that records its start, its thread setting and its end in tmp_path."""
    return _py(f"import os, time, pathlib; d = pathlib.Path({str(tmp_path)!r}); "
               f"(d / '{name}.start').write_text(str(time.time())); "
               f"(d / '{name}.threads').write_text(os.environ.get('OMP_NUM_THREADS', '')); "
               f"time.sleep({seconds}); (d / '{name}.end').write_text(str(time.time()))")


def _times(tmp_path, name):
    return float((tmp_path / f"{name}.start").read_text()), float((tmp_path / f"{name}.end").read_text())


def test_run_tasks_order_jobs_exclusive_and_failures(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    T = book.Task
    tasks = {
        "org": T("org", _stamp(tmp_path, "org", 0.3), exclusive=True),
        "side": T("side", _stamp(tmp_path, "side", 0.3)),
        "a": T("a", _stamp(tmp_path, "a", 0.3), deps={"org"}),
        "b": T("b", _stamp(tmp_path, "b", 0.3), deps={"org"}),
        "bad": T("bad", _py("raise SystemExit(3)"), deps={"org"}),
        "after_bad": T("after_bad", _stamp(tmp_path, "after_bad"), deps={"bad"}),
        "last": T("last", lambda: _stamp(tmp_path, "last"), deps={"a", "b"}),
        "no_cmd": T("no_cmd", lambda: (_ for _ in ()).throw(SystemExit("no run folder"))),
    }
    lines = []
    status = book.run_tasks(tasks, jobs=2, cores=4, log=lines.append, poll=0.02)
    assert status == {"org": "done", "side": "done", "a": "done", "b": "done",
                      "bad": "failed", "after_bad": "skipped", "last": "done",
                      "no_cmd": "failed"}
    assert not (tmp_path / "after_bad.start").exists()
    org, side = _times(tmp_path, "org"), _times(tmp_path, "side")
    a, b, last = _times(tmp_path, "a"), _times(tmp_path, "b"), _times(tmp_path, "last")
    assert org[1] <= side[0] or side[1] <= org[0], "the exclusive task ran beside another"
    assert org[1] <= a[0] and org[1] <= b[0] and max(a[1], b[1]) <= last[0]
    starts = sorted(_times(tmp_path, n)[0] for n in ("side", "a", "b"))
    ends = sorted(_times(tmp_path, n)[1] for n in ("side", "a", "b"))
    assert not (starts[2] < ends[0]), "three tasks ran at once with jobs=2"
    assert (tmp_path / "org.threads").read_text() == "4"  # alone: every core
    assert (tmp_path / "a.threads").read_text() == "2"  # cores // jobs
    assert any("bad: failed" in l for l in lines) and any("after_bad: skipped" in l for l in lines)
    assert any("no_cmd: failed before it started: no run folder" in l for l in lines)


def test_run_tasks_longest_chain_first(tmp_path):
    T = book.Task
    tasks = {"short": T("short", _stamp(tmp_path, "short"), cost=1),
             "long": T("long", _stamp(tmp_path, "long"), cost=5),
             "tail": T("tail", _stamp(tmp_path, "tail"), deps={"short"}, cost=10)}
    assert book._priorities(tasks) == {"short": 11, "long": 5, "tail": 10}
    book.run_tasks(tasks, jobs=1, cores=1, poll=0.02)
    assert _times(tmp_path, "short")[1] <= _times(tmp_path, "long")[0]


def test_organisms_for_the_chapters():
    main = organism.OrganismConfig()
    retain = organism.OrganismConfig(retain="forget10")
    assert book.organisms_for("rtuning", {}) == [main]
    assert book.organisms_for("npo_toy", {}) == [main, retain]
    assert book.organisms_for("unlearning", {}) == [main, retain]
    assert book.organisms_for("unlearning", {"retain_model": "", "tune": False}) == [main]
    assert book.organisms_for("unlearning", {"retain_model": ""}) == []  # tune needs one: refused
    assert book.organisms_for("npo_toy", {"dataset": "tofu"}) == [main]
    assert book.organisms_for("lunar", {"forget_quality": True, "model_name": "tinyworld:2"}) \
        == [organism.OrganismConfig(seed=2), organism.OrganismConfig(seed=2, retain="forget05")]
    assert book.organisms_for("rait", {"model_name": "Qwen/Qwen2.5-0.5B"}) == []
    assert book.organisms_for("tinyworld", {"epochs": 4}) == [organism.OrganismConfig(epochs=4)]
    assert book.organisms_for("tinyworld", {}) == [main, retain]  # shown beside it
    assert book.organisms_for("results", {}) == []
    assert book.notebook_defaults(book.ROOT / "notebooks" / "unlearning.ipynb")["steps"] == 20


def test_out_folder_is_for_execution_only_and_inputs_change_the_hash(tmp_path):
    with pytest.raises(SystemExit, match="--out book/real: the HTML is built from book/chapters"):
        book.main(["--root", str(tmp_path), "--out", "book/real"])
    rec = tmp_path / "results" / "m"
    rec.mkdir(parents=True)
    (rec / "RECORD.json").write_text("{}")
    p = {"recorded_dir": str(tmp_path / "results")}
    h = book.inputs_hash("results", p, tmp_path)
    assert h and h == book.inputs_hash("results", p, tmp_path)
    (rec / "RECORD.json").write_text('{"commit": "x"}')  # a new recording: the page is stale
    assert book.inputs_hash("results", p, tmp_path) != h
    assert book.inputs_hash("tinyworld", {}, tmp_path) == ""  # declares no other inputs
    # a method chapter on the organism compares with the recordings; a real-model run
    # (which writes them) does not depend on them
    assert book.inputs_hash("lunar", {}, tmp_path) != ""
    assert book.inputs_hash("lunar", {"model_name": "smollm2-tofu"}, tmp_path) == ""
