"""Recorded real-model runs read back into an organism chapter's discussion."""
import json

from kbnb.report import recorded


def _record(root, checks, preconditions=None, files=None, model="smollm2-tofu"):
    d = root / "smollm2"
    (d / "lunar").mkdir(parents=True, exist_ok=True)
    (d / "RECORD.json").write_text(json.dumps({"commit": "abcdef0123456", "date": "2026-11-29 21:00",
                                               "library_files": files or {"a.py": "1"}}))
    (d / "lunar" / "metrics.json").write_text(json.dumps({
        "params": {"model_name": model},
        "metrics": {"checks": {k: {"status": s, "sentence": f"{k} said {s}."} for k, s in
                               checks.items()}, "preconditions": preconditions or {}}}))


def test_the_sentence_compares_claims_and_says_what_changed(tmp_path):
    _record(tmp_path, {"forget_low": "PASS", "retain_kept": "UNCLEAR", "only_there": "PASS"})
    text = recorded.comparison_sentence("lunar", {"forget_low": "UNCLEAR", "retain_kept": "PASS"},
                                        "tinyworld", tmp_path, current={"a.py": "2"})
    assert "on smollm2-tofu (commit abcdef0123, 2026-11-29)" in text
    assert "Of the 2 claims both runs check, it shows 1 (this run: 1)" in text
    assert "Shown there but not here: forget_low; shown here but not there: retain_kept" in text
    assert "precondition" not in text
    assert "library changed since that recording (1 module(s))" in text
    assert "forget_low: shown (forget_low said PASS.)" in text and "only_there" not in text
    same = recorded.comparison_sentence("lunar", {}, "tinyworld", tmp_path, current={"a.py": "1"})
    assert "library changed" not in same and "only_there: shown" in same
    # a failed precondition: no count of claims shown, each claim said to mean nothing
    _record(tmp_path, {"forget_low": "PASS", "retain_kept": "UNCLEAR"}, {"ref_refusal": {"met": False}})
    bad = recorded.comparison_sentence("lunar", {"forget_low": "UNCLEAR", "retain_kept": "PASS"},
                                       "tinyworld", tmp_path, current={"a.py": "1"})
    assert "precondition of the method did not hold there (ref_refusal)" in bad
    assert "it shows" not in bad and "Shown there" not in bad
    assert "Its claims (not meaningful): forget_low: shown" in bad


def test_no_recording_or_the_same_model_is_said_plainly(tmp_path):
    assert "No real-model recording" in recorded.comparison_sentence("lunar", {}, "tinyworld",
                                                                      tmp_path)
    _record(tmp_path, {"forget_low": "PASS"})
    assert "No real-model recording" in recorded.comparison_sentence("lunar", {}, "smollm2-tofu",
                                                                      tmp_path)


def test_a_chapter_owns_the_modules_it_keeps_beside_it():
    from kbnb.report.recorded import changed_modules
    old = {"chapters/lunar.py": "1", "chapters/lunar_present.py": "1",
           "chapters/lunar_attacks.py": "1", "chapters/rait.py": "1", "eval/stats.py": "1"}
    new = {k: "2" for k in old}
    record = {"library_files": old, "chapters": {"lunar": {}, "lunar_attacks": {}, "rait": {}}}
    assert changed_modules(record, new, ["lunar"]) == [
        "chapters/lunar.py", "chapters/lunar_present.py", "eval/stats.py"]
    assert changed_modules(record, new, ["lunar_attacks"]) == [
        "chapters/lunar_attacks.py", "eval/stats.py"]
    assert len(changed_modules(record, new)) == 5


def test_an_excluded_claim_is_said_in_its_words(tmp_path):
    _record(tmp_path, {"forget_drop": "EXCLUDED", "forget_low": "PASS"})
    text = recorded.comparison_sentence("lunar", {"forget_drop": "UNCLEAR", "forget_low": "PASS"},
                                        "tinyworld", tmp_path, current={"a.py": "1"})
    assert "forget_drop: excluded at the paper's size (forget_drop said EXCLUDED.)" in text
    assert "it shows 1 (this run: 1)" in text  # an excluded claim is not an effect shown
