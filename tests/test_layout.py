"""The package's architecture, checked: imports flow one way (down the layers), no module
imports kbnb code inside a function, no circle, and every chapter module matches its notebook."""
import ast
from pathlib import Path

import pytest

from kbnb.chapters import spec_of, toc_chapters

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "kbnb"

# bottom to top: a module may import from its own layer or a lower one
LAYERS = ["core", "data", "organism", "lm", "eval", "unlearning", "methods", "report",
          "chapters", "book"]


def _modules():
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG)
        if len(rel.parts) == 1:  # kbnb/__init__.py: the package's front door
            continue
        yield f, rel.parts[0]


def _kbnb_imports(tree):
    """(node, imported module, inside a function?) for every import of kbnb code."""
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inner = {id(m) for f in funcs for m in ast.walk(f) if m is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            yield node, "<relative>", id(node) in inner
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "kbnb":
            for a in node.names:
                mod = node.module if node.module != "kbnb" else f"kbnb.{a.name}"
                yield node, mod, id(node) in inner
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "kbnb":
                    yield node, a.name, id(node) in inner


def test_every_subpackage_is_a_layer():
    found = {p.name for p in PKG.iterdir() if (p / "__init__.py").exists()}
    assert found == set(LAYERS)


def test_imports_flow_down_the_layers():
    bad = []
    for f, layer in _modules():
        for node, mod, _ in _kbnb_imports(ast.parse(f.read_text())):
            if mod == "<relative>":
                bad.append(f"{f.relative_to(ROOT)}:{node.lineno} relative import")
                continue
            parts = mod.split(".")
            if len(parts) < 2 or parts[1] not in LAYERS:
                bad.append(f"{f.relative_to(ROOT)}:{node.lineno} imports {mod}")
            elif LAYERS.index(parts[1]) > LAYERS.index(layer):
                bad.append(f"{f.relative_to(ROOT)}:{node.lineno} ({layer}) imports {mod} "
                           f"from the layer above ({parts[1]})")
    assert not bad, "\n".join(bad)


def test_no_kbnb_import_inside_a_function():
    """Function-local imports are for optional heavy dependencies, never to hide a circle."""
    bad = [f"{f.relative_to(ROOT)}:{node.lineno} imports {mod}"
           for f, _ in _modules()
           for node, mod, inner in _kbnb_imports(ast.parse(f.read_text())) if inner]
    assert not bad, "\n".join(bad)


def test_no_import_circle_between_modules():
    graph = {}
    for f, _ in _modules():
        name = ".".join(("kbnb",) + f.relative_to(PKG).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        graph[name] = set()
        for _, mod, _ in _kbnb_imports(ast.parse(f.read_text())):
            while mod and mod not in graph and not (PKG.parent / (mod.replace(".", "/") + ".py")).exists() \
                    and not (PKG.parent / mod.replace(".", "/") / "__init__.py").exists():
                mod = mod.rsplit(".", 1)[0] if "." in mod else ""
            if mod and mod != name:
                graph[name].add(mod)
    state = {}

    def visit(n, path):
        if state.get(n) == "done":
            return
        assert state.get(n) != "open", "import circle: " + " -> ".join(path + [n])
        state[n] = "open"
        for m in graph.get(n, ()):
            visit(m, path + [n])
        state[n] = "done"

    for n in graph:
        visit(n, [])


@pytest.mark.parametrize("name", toc_chapters(ROOT))
def test_chapter_params_match_the_notebook(name):
    """The notebook's parameters cell and its chapter's Params: same names, same defaults."""
    from kbnb.book.runner import notebook_defaults
    spec = spec_of(name)
    assert spec.params is not None, f"kbnb/chapters/{name}.py declares no Params"
    cell = notebook_defaults(ROOT / "notebooks" / f"{name}.ipynb")
    assert cell == spec.params.defaults()


@pytest.mark.parametrize("name", toc_chapters(ROOT))
def test_papermill_sees_every_parameter(name):
    """papermill skips a parameter line with two '=' (a comment's 'a=b' or '>='): it then
    warns 'Passed unknown parameter' on every run and --help-notebook omits it."""
    import papermill
    seen = papermill.inspect_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"))
    assert set(seen) == set(spec_of(name).params.defaults())


@pytest.mark.parametrize("name", toc_chapters(ROOT))
def test_chapter_module_and_notebook_go_together(name):
    assert (PKG / "chapters" / f"{name}.py").exists()
    src = (ROOT / "notebooks" / f"{name}.ipynb").read_text()
    assert f"from kbnb.chapters import {name}" in src, "the notebook does not use its chapter module"
    assert "check_choice" not in src, "parameters are checked by the chapter's Params"


def test_notebook_cells_have_unique_ids_and_no_outputs():
    """nbformat 4.5 cells carry ids (papermill warns on each one without); sources are
    committed without outputs."""
    import json
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        ids = [c.get("id") for c in nb["cells"]]
        assert all(ids) and len(set(ids)) == len(ids), nb_path.name
        assert not any(c.get("outputs") for c in nb["cells"]), nb_path.name
