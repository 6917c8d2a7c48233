"""The by-script comparison of two builds' metrics.json files."""
import json

from kbnb.book import compare


def _write(runs, name, doc):
    d = runs / f"{name}-abc123"
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps(doc))


def test_equal_builds_pass_and_a_moved_number_fails(tmp_path, capsys):
    doc = {"metrics": {"headline": {"ap": {"mean": 0.5, "ci": [0.4, 0.6]}}, "seconds": 12.0}}
    _write(tmp_path / "a", "rait", doc)
    _write(tmp_path / "b", "rait", {**doc, "metrics": {**doc["metrics"], "seconds": 99.0}})
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0  # timings aside
    _write(tmp_path / "c", "rait", {"metrics": {"headline": {"ap": {"mean": 0.5000001,
                                                                     "ci": [0.4, 0.6]}}}})
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "c")]) == 1
    assert "/metrics/headline/ap/mean: 0.5 vs 0.5000001" in capsys.readouterr().out
    assert compare.differences([1, 2], [1]) == [": 2 items vs 1"]
    assert compare.differences(float("nan"), float("nan")) == []


def test_the_table_shows_each_headline_and_verdict_beside_the_other(tmp_path, capsys):
    a = {"metrics": {"headline": {"ap": {"mean": 0.5, "ci95": [0.4, 0.6]}},
                     "checks": {"gain": {"status": "UNCLEAR"}}}}
    b = {"metrics": {"headline": {"ap": {"mean": 0.7, "ci95": [0.65, 0.75]}, "new": {"mean": 1.0}},
                     "checks": {"gain": {"status": "EXCLUDED"}}}}
    _write(tmp_path / "a", "rtuning", a)
    _write(tmp_path / "b", "rtuning", b)
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b"), "--table"]) == 0
    out = capsys.readouterr().out
    assert "| rtuning | ap | 0.5 [0.4, 0.6] | 0.7 [0.65, 0.75] |" in out
    assert "| rtuning | new | — | 1 |" in out and "| rtuning | check: gain | UNCLEAR | EXCLUDED |" in out
