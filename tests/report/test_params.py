"""Typed chapter parameters: defaults, validation that names the parameter, run identity."""
from dataclasses import dataclass

import pytest

from kbnb.chapters import spec_of, toc_chapters
from kbnb.core.checks import check_int, check_number
from kbnb.report.chapter import Chapter
from kbnb.report.params import ChapterParams, choice, flag, integer, number, param, seeds_param


@dataclass(frozen=True)
class Toy(ChapterParams):
    mode: str = choice("open", ("open", "mc"))
    n: int = integer(3, 1)
    frac: float = number(0.5, 0, 1)
    lora: bool = flag(False)
    seeds: list = seeds_param()
    output_dir: str = param("runs", run=False)

    def validate(self):
        if self.mode == "mc" and self.n > 4:
            raise ValueError(f"n={self.n}: allowed at most 4 options with mode='mc'")


def test_defaults_and_run_identity():
    p = Toy()
    assert p.as_dict()["output_dir"] == "runs"
    assert p.run_params() == {"mode": "open", "n": 3, "frac": 0.5, "lora": False,
                              "seeds": [0, 1, 2]}
    assert Toy().seeds is not Toy().seeds  # a list default is copied per instance


@pytest.mark.parametrize("bad, message", [
    (dict(mode="closed"), "mode='closed': allowed 'open', 'mc'"),
    (dict(n=0), "n=0: allowed an integer >= 1"),
    (dict(n=2.5), "n=2.5: allowed an integer >= 1"),
    (dict(n=True), "n=True: allowed an integer >= 1"),
    (dict(frac=1.5), r"frac=1.5: allowed a finite number in \[0, 1\]"),
    (dict(frac=float("nan")), "frac=nan"),
    (dict(lora="yes"), "lora='yes': allowed True, False"),
    (dict(seeds=[0, 0]), "seeds must be distinct"),
    (dict(seeds=[-1]), "non-negative"),
    (dict(mode="mc", n=5), "n=5: allowed at most 4 options"),
])
def test_a_bad_parameter_is_named_with_what_is_allowed(bad, message):
    with pytest.raises(ValueError, match=message):
        Toy(**bad)


def test_from_namespace_and_from_dict():
    ns = {"mode": "mc", "n": 2, "unrelated": object(), "plt": None}
    assert Toy.from_namespace(ns).mode == "mc"
    with pytest.raises(ValueError, match="unknown parameter.*zzz.*allowed mode, n"):
        Toy.from_dict({"zzz": 1})
    assert Toy.from_dict({"zzz": 1, "n": 4}, strict=False).n == 4


def test_chapter_hashes_the_run_params(tmp_path):
    a = Chapter("toy", Toy(output_dir=str(tmp_path / "a")))
    b = Chapter("toy", Toy(output_dir=str(tmp_path / "b")))
    assert a.out.name == b.out.name  # where results go is not part of the run's identity
    assert a.out.parent.name == "a" and a.params["seeds"] == [0, 1, 2]
    c = Chapter("toy", Toy(n=4, output_dir=str(tmp_path / "a")))
    assert c.out.name != a.out.name


def test_range_checks():
    assert check_int("k", 0, 0) == 0 and check_number("x", 1e-9, 0, lo_open=True) == 1e-9
    with pytest.raises(ValueError, match=r"x=0: allowed a finite number in \(0, inf\]"):
        check_number("x", 0, 0, lo_open=True)


def test_the_field_helpers_live_in_core_and_carry_a_tuning_grid():
    """One parameter system: a chapter's Params and an unlearning method share the helpers
    of kbnb.core.fields (report re-exports them); ``grid=`` declares what a search tries."""
    from kbnb.core import fields as F
    from kbnb.report import params as P

    assert all(getattr(P, n) is getattr(F, n) for n in ("param", "choice", "integer", "number",
                                                         "flag", "seeds_param"))
    assert issubclass(ChapterParams, F.Checked)

    @dataclass(frozen=True)
    class Knobs(F.Checked):
        beta: float = number(0.1, 0, lo_open=True, grid=(0.1, 0.5))
        mode: str = choice("a", ("a", "b"), grid=["a", "b"])
        n: int = integer(2, 1)

    assert Knobs.tuning_grid() == {"beta": (0.1, 0.5), "mode": ("a", "b")}
    assert Knobs.defaults() == {"beta": 0.1, "mode": "a", "n": 2}
    Knobs.check_fields("Knobs")
    assert Toy.tuning_grid() == {}

    @dataclass(frozen=True)
    class Bad(F.Checked):
        beta: float = number(0.1, 0, lo_open=True, grid=(0.1, 0.0))

    with pytest.raises(ValueError, match=r"beta=0.0: allowed a finite number in \(0, inf\]"):
        Bad.check_fields("Bad")


@pytest.mark.parametrize("name", toc_chapters())
def test_every_chapter_declares_valid_defaults(name):
    spec = spec_of(name)
    p = spec.params()  # the defaults validate
    assert spec.title and spec.cost > 0
    assert set(p.run_params()) <= set(p.as_dict())
    for upstream in spec.depends:
        assert upstream == "*" or upstream in toc_chapters()
