"""Recorded real-model runs read back into an organism chapter's discussion."""
import json

from kbnb.report import recorded


def _record(root, checks, preconditions=None, files=None, model="smollm2-tofu"):
    d = root / "smollm2"
    (d / "lunar").mkdir(parents=True, exist_ok=True)
    (d / "RECORD.json").write_text(json.dumps({"commit": "abcdef0123456", "date": "2026-11-29 21:00",
                                               "library_files": files or {"chapters/lunar.py": "1"}}))
    (d / "lunar" / "metrics.json").write_text(json.dumps({
        "params": {"model_name": model},
        "metrics": {"checks": {k: {"status": s, "sentence": f"{k} said {s}."} for k, s in
                               checks.items()}, "preconditions": preconditions or {}}}))


def test_the_sentence_compares_claims_and_says_what_changed(tmp_path):
    _record(tmp_path, {"forget_low": "PASS", "retain_kept": "UNCLEAR", "only_there": "PASS"})
    text = recorded.comparison_sentence("lunar", {"forget_low": "UNCLEAR", "retain_kept": "PASS"},
                                        "tinyworld", tmp_path, current={"chapters/lunar.py": "2"})
    assert "on smollm2-tofu (commit abcdef0123, 2026-11-29)" in text
    assert "Of the 2 claims both runs check, it shows 1 (this run: 1)" in text
    assert "Shown there but not here: forget_low; shown here but not there: retain_kept" in text
    assert "precondition" not in text
    assert "library changed since that recording (1 module(s))" in text
    assert "forget_low: shown (forget_low said PASS.)" in text and "only_there" not in text
    same = recorded.comparison_sentence("lunar", {}, "tinyworld", tmp_path,
                                        current={"chapters/lunar.py": "1"})
    assert "library changed" not in same and "only_there: shown" in same
    # a failed precondition: no count of claims shown, each claim said to mean nothing
    _record(tmp_path, {"forget_low": "PASS", "retain_kept": "UNCLEAR"}, {"ref_refusal": {"met": False}})
    bad = recorded.comparison_sentence("lunar", {"forget_low": "UNCLEAR", "retain_kept": "PASS"},
                                       "tinyworld", tmp_path, current={"chapters/lunar.py": "1"})
    assert "precondition of the method did not hold there (ref_refusal)" in bad
    assert "it shows" not in bad and "Shown there" not in bad
    assert "Its claims (not meaningful): forget_low: shown" in bad


def test_no_recording_or_the_same_model_is_said_plainly(tmp_path):
    assert "No real-model recording" in recorded.comparison_sentence("lunar", {}, "tinyworld",
                                                                      tmp_path)
    _record(tmp_path, {"forget_low": "PASS"})
    assert "No real-model recording" in recorded.comparison_sentence("lunar", {}, "smollm2-tofu",
                                                                      tmp_path)


def test_without_its_notebook_a_chapter_owns_the_modules_it_keeps_beside_it(tmp_path):
    from kbnb.report.recorded import changed_modules
    old = {"chapters/lunar.py": "1", "chapters/lunar_present.py": "1",
           "chapters/lunar_attacks.py": "1", "chapters/rait.py": "1", "eval/stats.py": "1"}
    new = {k: "2" for k in old}
    record = {"library_files": old, "chapters": {"lunar": {}, "lunar_attacks": {}, "rait": {}}}
    assert changed_modules(record, new, ["lunar"], notebooks=tmp_path) == [
        "chapters/lunar.py", "chapters/lunar_present.py", "eval/stats.py"]
    assert changed_modules(record, new, ["lunar_attacks"], notebooks=tmp_path) == [
        "chapters/lunar_attacks.py", "eval/stats.py"]
    assert len(changed_modules(record, new)) == 5


def test_a_recording_is_stale_only_when_a_module_its_chapter_runs_changed():
    from kbnb.report.recorded import changed_modules
    from kbnb.report.runs import chapter_modules, library_files
    files = library_files()
    lunar = chapter_modules("lunar")
    # what the notebook imports, what that imports, and the packages on the way
    assert {"chapters/lunar.py", "chapters/lunar_present.py", "unlearning/lunar.py",
            "unlearning/__init__.py", "lm/activations.py", "__init__.py"} <= lunar <= set(files)
    assert "chapters/lunar.py" in chapter_modules("lunar_attacks")  # it reuses LUNAR's runs
    assert "methods/rait.py" not in lunar and "chapters/rait.py" not in lunar
    record = {"library_files": files, "chapters": {"lunar": {}, "rait": {}}}
    edited = {**files, "methods/rait.py": "edited", "chapters/lunar.py": "edited"}
    assert changed_modules(record, edited, ["lunar"]) == ["chapters/lunar.py"]
    assert changed_modules(record, edited, ["rait"]) == ["methods/rait.py"]
    assert changed_modules(record, edited, ["lunar", "rait"]) == [
        "chapters/lunar.py", "methods/rait.py"]


def test_chapter_modules_follow_imports_inside_functions(tmp_path):
    from kbnb.report.runs import chapter_modules
    lib = tmp_path / "kbnb"
    (lib / "chapters").mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "chapters" / "__init__.py").write_text("")
    (lib / "chapters" / "x.py").write_text("def f():\n    from kbnb import a\n")
    (lib / "a.py").write_text("import kbnb.b as b\n")
    (lib / "b.py").write_text("")
    (lib / "c.py").write_text("")
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    cell = {"cell_type": "code", "source": ["%matplotlib inline\n", "from kbnb.chapters import x\n"]}
    (nbs / "x.ipynb").write_text(json.dumps({"cells": [cell]}))
    assert chapter_modules("x", lib, nbs) == {"__init__.py", "chapters/__init__.py",
                                              "chapters/x.py", "a.py", "b.py"}
    assert chapter_modules("y", lib, nbs) is None


def test_an_excluded_claim_is_said_in_its_words(tmp_path):
    _record(tmp_path, {"forget_drop": "EXCLUDED", "forget_low": "PASS"})
    text = recorded.comparison_sentence("lunar", {"forget_drop": "UNCLEAR", "forget_low": "PASS"},
                                        "tinyworld", tmp_path, current={"chapters/lunar.py": "1"})
    assert "forget_drop: excluded at the paper's size (forget_drop said EXCLUDED.)" in text
    assert "it shows 1 (this run: 1)" in text  # an excluded claim is not an effect shown
