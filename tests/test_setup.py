"""The project's set-up files agree with each other."""
import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _names(specs):
    return {re.split(r"[<>=!~\[ ;]", s.strip(), maxsplit=1)[0].lower().replace("_", "-")
            for s in specs if not s.strip().startswith("-")}


def test_environment_yml_names_the_same_packages_as_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(pyproject["dependencies"]) | _names(pyproject["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in env["dependencies"]
    assert "-e ." in pip
    assert _names(pip) == wanted


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make book" in readme
    commands = [l for l in ci.splitlines() if l.strip() and not l.startswith("#")
                and not l.startswith(("set ", "cd "))]
    assert commands == ["make test"]


# Every chapter takes these; `seeds` (a list, issue #12) replaced the single `seed`.
CHAPTER_PARAMS = ("model_name", "dataset", "seeds", "device", "output_dir")
REQUIRED = {
    # the organism chapter evaluates a fixed model on a fixed world, nothing is drawn:
    # its seed is the organism's, given in the name (tinyworld:N)
    "tinyworld": ("model_name", "dataset", "device", "output_dir"),
    # the results page runs no model; it reads the chapters' metrics.json
    "results": ("chapters_dir", "output_dir"),
}


def test_source_notebooks_have_no_outputs_and_one_parameters_cell():
    import nbformat
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
        src = tagged[0].source
        for name in REQUIRED.get(path.stem, CHAPTER_PARAMS):
            assert re.search(rf"^{name} = ", src, re.M), f"{path.name} lacks parameter {name}"
        for line in src.splitlines():
            assert "#" in line, f"{path.name}: parameter without a comment: {line}"


def test_every_toc_chapter_has_a_source_notebook():
    from kbnb.chapters import toc_chapters
    for name in toc_chapters(ROOT):
        assert (ROOT / "notebooks" / f"{name}.ipynb").exists()
    params = yaml.safe_load((ROOT / "book" / "params.yml").read_text())
    assert set(params) <= set(toc_chapters(ROOT))


def test_the_lock_pins_every_dependency_exactly():
    """`make env` installs from requirements.lock: every package pyproject.toml asks for
    (torch aside, which TORCH chooses) is there at one exact version."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = (_names(pyproject["dependencies"]) | _names(pyproject["optional-dependencies"]["test"])
              | _names(pyproject["optional-dependencies"]["real"])) - {"torch"}
    lines = [l for l in (ROOT / "requirements.lock").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[^=\s]+", l) for l in lines), lines
    locked = _names(lines)
    assert wanted <= locked, wanted - locked
    assert "torch" not in locked and "kbnb" not in locked
    assert "-r $(LOCK)" in (ROOT / "Makefile").read_text()
