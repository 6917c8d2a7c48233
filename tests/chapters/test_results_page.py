"""The results page's recorded real-model columns (make book-real): read from the
committed files, shown beside this build's number, with a note on library changes."""
import json

from kbnb.chapters import results
from kbnb.report.spec import Row

ROW = Row("forget_rouge1", "forget ROUGE-1 recall after the edit", "forget_low", "0.109", "paper")


def _metrics(path, mean, status):
    path.parent.mkdir(parents=True, exist_ok=True)
    h = {"mean": mean, "ci95": [mean - 0.1, mean + 0.1], "n": 3, "ci_method": "t interval over seeds",
         "values": [mean] * 3}
    path.write_text(json.dumps({"params": {}, "metrics": {
        "headline": {"forget_rouge1": h},
        "checks": {"forget_low": {"status": status, "sentence": "why"}}}}))


def test_recorded_columns_sit_beside_this_build(tmp_path):
    _metrics(tmp_path / "smollm2" / "lunar" / "metrics.json", 0.42, "UNCLEAR")
    files = {"chapters/lunar.py": "aaa", "eval/stats.py": "bbb"}
    (tmp_path / "smollm2" / "RECORD.json").write_text(json.dumps(
        {"commit": "0123456789abcdef", "date": "2026-11-29", "model": "SmolLM2",
         "library_files": files}))
    rows = [("lunar", "LUNAR", ROW), ("npo_toy", "NPO", Row("gt_fall", "falls", None, "x", ""))]
    real = results.recorded(tmp_path, rows)
    assert list(real) == ["smollm2"]
    got = real["smollm2"]["rows"]
    assert list(got) == [("lunar", "forget_rouge1")] and got[("lunar", "forget_rouge1")]["mean"] == 0.42

    _metrics(tmp_path / "build" / "metrics.json", 0.06, "PASS")
    here = results._row(tmp_path / "build" / "metrics.json", "lunar", "LUNAR", ROW)
    page = results.table_html([here], recorded_runs=real)
    assert "smollm2 (recorded, 95% CI)" in page
    assert page.index("0.060") < page.index("0.420") < page.index("0.109")
    assert "cannot tell" in page and "shown" in page

    same = results.recording_note("smollm2", real["smollm2"], dict(files))
    assert "0123456789" in same and "has not changed since" in same
    moved = results.recording_note("smollm2", real["smollm2"],
                                   {**files, "eval/stats.py": "ccc", "lm/new.py": "d"})
    assert "changed since: eval/stats.py, lm/new.py)" in moved and "refresh" in moved
    assert results.recorded(tmp_path / "none", rows) == {}
    # a recorded headline without an interval says so; a metric the run lacks: "not run"
    one = dict(got[("lunar", "forget_rouge1")], mean=None, ci95=None, n=1,
               ci_method="not measurable: one seed", measurable=False)
    assert "not measurable, n = 1" in results._cell(one, 3)
    why = "not measurable: one seed: an interval over seeds needs at least 2"
    assert results._method(dict(one, ci_method=why)) == why  # its reason, no "over 1 "
    assert results._method(here) == "t interval over 3 seeds"
    assert results._cell({"mean": None, "missing": True}, 3) == "<td>not run</td>"


def test_a_headline_whose_precondition_failed_shows_no_verdict(tmp_path):
    path = tmp_path / "metrics.json"
    _metrics(path, 0.35, "UNCLEAR")
    doc = json.loads(path.read_text())
    doc["metrics"]["headline"]["forget_rouge1"].update(
        meaningful=False, not_meaningful="Precondition not met: the edit removed 3%.")
    path.write_text(json.dumps(doc))
    row = results._row(path, "lunar", "LUNAR", ROW)
    assert row["not_meaningful"].startswith("Precondition not met")
    cell = results._cell(row, 3)
    assert "not meaningful: a precondition failed" in cell and "cannot tell" not in cell
    page = results.table_html([row])
    assert "not meaningful: a precondition failed" in page and "cannot tell" not in page
    _metrics(path, 0.35, "UNCLEAR")
    assert results._row(path, "lunar", "LUNAR", ROW)["not_meaningful"] is None


def test_every_status_has_its_words_on_the_page(tmp_path):
    from kbnb.eval.verdicts import STATUS_WORDS, STATUSES
    assert set(results.STATUS_TEXT) == set(STATUSES) | {None}
    path = tmp_path / "metrics.json"
    _metrics(path, 0.35, "EXCLUDED")
    row = results._row(path, "lunar", "LUNAR", ROW)
    assert row["smallest_effect"] is None  # a metrics.json written before sizes were declared
    assert "<em>excluded at the paper's size</em>" in results._cell(row, 3)
    assert ">excluded at the paper's size</td>" in results.table_html([row])
    assert STATUS_WORDS["UNCLEAR"] == "cannot tell" and STATUS_WORDS["PASS"] == "shown"


def test_tuned_model_targets_table():
    run = {"record": {"measured": {"sizes": {"forget": 100}, "targets": {
        "forget_rouge": {"value": 0.71, "target": ">= 0.6", "pass": True},
        "forget_quality_target": {"value": 3e-9, "target": "< 0.01", "pass": True},
        "invented_refusal": {"value": 0.5, "target": ">= 0.8", "pass": False}}}}}
    page = results.tuned_targets_html("smollm2", run)
    assert "0.710" in page and "3.00e-09" in page and "<strong>not met</strong>" in page
    assert "forget 100" in page and "greedy answers." in page
    run["record"]["measured"]["reports"] = {"smollm2": {"new_tokens_forget": 64,
                                                        "new_tokens_world_facts": 24}}
    assert "at most so many tokens: forget 64, world_facts 24" in \
        results.tuned_targets_html("smollm2", run)
    assert results.tuned_targets_html("smollm2", {"record": {}}) == ""


def test_chapters_recorded_at_different_commits_say_so_each(tmp_path):
    files = {"chapters/lunar.py": "aaa", "chapters/rait.py": "bbb"}
    (tmp_path / "smollm2").mkdir()
    (tmp_path / "smollm2" / "RECORD.json").write_text(json.dumps(
        {"commit": "2222222222bb", "date": "2026-11-30", "model": "SmolLM2",
         "library_files": files, "chapters": {
             "lunar": {"commit": "1111111111aa", "date": "2026-11-29",
                       "library_files": {**files, "chapters/rait.py": "old"}},
             "rait": {"commit": "2222222222bb", "date": "2026-11-30", "library_files": files}}}))
    note = results.recording_note("smollm2", {"record": json.loads(
        (tmp_path / "smollm2" / "RECORD.json").read_text())}, files)
    first, second = note.split("; ")
    assert "lunar at commit 1111111111" in first and "has not changed" in first  # rait.py: not its
    assert "rait at commit 2222222222" in second and "has not changed" in second
    # another chapter's module does not make a recording stale
    files2 = {**files, "chapters/lunar.py": "new"}
    rec = json.loads((tmp_path / "smollm2" / "RECORD.json").read_text())
    rec["chapters"]["lunar"]["library_files"] = dict(files)
    note = results.recording_note("smollm2", {"record": rec}, {**files2, "chapters/results.py": "x"})
    assert "lunar at commit 1111111111 on 2026-11-29 (the library changed since: chapters/lunar.py)" in note
    assert "rait at commit 2222222222 on 2026-11-30 (the library has not changed since)" in note


def test_the_interval_method_is_said_once_under_the_table(tmp_path):
    for name, mean in (("a", 0.2), ("b", 0.4)):
        _metrics(tmp_path / name / "metrics.json", mean, "PASS")
    rows = [results._row(tmp_path / n / "metrics.json", "lunar", "LUNAR", ROW) for n in "ab"]
    rows[1]["ci_method"] = "bootstrap over questions"
    page = results.table_html(rows)
    table, note = page.split("</table>")
    assert "t interval over" not in table and "bootstrap over" not in table
    assert "0.200 ± 0.100<sup>a</sup>" in table and "0.400 ± 0.100<sup>b</sup>" in table
    assert note.count("t interval over 3 seeds") == 1 and "<sup>b</sup> bootstrap over 3 questions" in note
    assert results.table_html([]).endswith("</table>")  # no rows, no note


def test_the_forest_plot_gathers_the_checks_the_table_shows(tmp_path):
    build, rec = tmp_path / "build" / "metrics.json", tmp_path / "smollm2" / "lunar" / "metrics.json"
    _metrics(build, 0.06, "PASS")
    _metrics(rec, 0.42, "UNCLEAR")
    doc = json.loads(build.read_text())
    doc["metrics"]["checks"]["forget_low"].update(diff=-0.07, ci95=[-0.13, -0.01])
    build.write_text(json.dumps(doc))
    (tmp_path / "smollm2" / "RECORD.json").write_text(json.dumps(
        {"commit": "0123456789abcdef", "model": "SmolLM2-135M-Instruct (GGUF)"}))
    rows = [("lunar", "LUNAR", ROW), ("lunar", "LUNAR", Row("retain_rouge1", "kept", None, "", ""))]
    here = [results._row(build, "lunar", "LUNAR", r) for _, _, r in rows]
    real = results.recorded(tmp_path, rows)
    checks = results.forest_checks(here, real)
    label = "LUNAR: forget ROUGE-1 recall after the edit"
    assert list(checks) == [results.BUILD_MODEL, "SmolLM2-135M-Instruct (recorded)"]
    assert list(checks[results.BUILD_MODEL]) == [label]  # the row without a check is not a claim
    assert checks[results.BUILD_MODEL][label]["diff"] == -0.07
    fig, caption = results.forest(here, real)
    markers = [ln.get_gid() for ln in fig.axes[0].lines if (ln.get_gid() or "").startswith("point|")]
    assert markers == [f"point|{results.BUILD_MODEL}|{label}"]
    # the recording's check has no difference and interval (an older file): named, not drawn
    assert "Not drawn: SmolLM2-135M-Instruct (recorded): " + label in caption


def test_the_forest_plot_names_this_builds_model(tmp_path):
    """A build on the organism is the organism's points; a build with the real parameters
    (``book/params-real.yml``) is named for the models its runs used, not the organism."""
    for name, model in (("org", None), ("a", "smollm2-tofu"), ("b", "smollm2-tofu-retain")):
        _metrics(tmp_path / name / "metrics.json", 0.2, "PASS")
        if model:
            doc = json.loads((tmp_path / name / "metrics.json").read_text())
            doc["params"]["model_name"] = model
            (tmp_path / name / "metrics.json").write_text(json.dumps(doc))
    row = {n: results._row(tmp_path / n / "metrics.json", "lunar", "LUNAR", ROW) for n in ("org", "a", "b")}
    assert results.build_model([row["org"]]) == results.BUILD_MODEL
    assert results.build_model([row["a"], row["b"]]) == "smollm2-tofu, smollm2-tofu-retain (this build)"
