"""Execute the book's notebooks with papermill (cached) and build it with Jupyter Book.

``python -m kbnb.book --params book/params.yml`` runs every notebook listed in
``_toc.yml`` (as ``book/chapters/<name>``) from its source ``notebooks/<name>.ipynb``
with the parameters in the YAML file, then ``jupyter-book build . -W -n --keep-going``.

* **Cache.** A notebook is executed again only when its source, its parameters, the
  ``kbnb`` library or a chapter it depends on changed (the hash is stored in the
  executed copy's metadata, with the run folder its results went to).
* **Declarations.** Each chapter declares itself once, in ``SPEC`` of its chapter module
  ``kbnb/chapters/<name>.py`` (:mod:`kbnb.report.spec`): the chapters it builds on (it
  receives their run folder as a parameter: the attacks chapter attacks the LUNAR
  chapter's selected edit; the results page reads every chapter's ``metrics.json``),
  the retain organism it loads, its cost. Chapters run in dependency order.
* ``--only X`` executes X (and what depends on it); the HTML is built only when
  every other executed chapter is current, so a stale copy is never published.
* **Parallel.** Chapters run as ``--jobs`` processes at once (default 2 on 2 cores or
  more), each with ``cores // jobs`` threads, longest remaining chain first. The
  organisms the chapters load are trained first, side by side, as tasks of their own,
  each on one thread (``kbnb.organism.model.TrainLoop``: the weights never depend on the
  machine). Thread counts do not change the chapters' results either. A failed chapter
  stops only
  the chapters that build on it; the others finish and keep their results.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import yaml

from kbnb.chapters import spec_of, toc_chapters
from kbnb.core import threads as threads_module
from kbnb.core.threads import available_cores
from kbnb.organism import OrganismConfig, build_organism, organism_path, parse_organism_name
from kbnb.report.runs import library_files, library_hash

ROOT = Path(__file__).resolve().parents[2]

def run_hash(source: Path, params: dict, extra: str = "") -> str:
    h = hashlib.sha256(source.read_bytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(library_hash().encode())
    h.update(extra.encode())
    return h.hexdigest()[:16]


def _stored(path: Path) -> dict:
    """The ``kbnb`` metadata of an executed copy (hash, params, run_dir, seconds), or {}."""
    try:
        return json.loads(path.read_text())["metadata"].get("kbnb", {}) or {}
    except (OSError, ValueError, KeyError):
        return {}


def _stored_hash(path: Path) -> str | None:
    return _stored(path).get("hash")


def upstream(name: str, names: list[str]) -> dict:
    """``{upstream chapter: parameter or None}`` for ``name`` among ``names`` (its
    ``SPEC.depends``)."""
    dep = spec_of(name).depends
    if "*" in dep:
        return {n: None for n in names if n != name}
    return {n: p for n, p in dep.items() if n in names}


def in_order(names: list[str]) -> list[str]:
    """``names`` with every chapter after the chapters it depends on (else _toc.yml order)."""
    done, out = set(), []

    def visit(n, stack=()):
        if n in done:
            return
        if n in stack:
            raise ValueError(f"the chapters' SPEC.depends have a cycle through {n}")
        for u in upstream(n, names):
            visit(u, stack + (n,))
        done.add(n)
        out.append(n)

    for n in names:
        visit(n)
    return out


def _find_run_dir(name: str, params: dict, root: Path, since: float) -> str | None:
    """The run folder a chapter execution wrote: ``<output_dir>/<name>-*/metrics.json``
    newest and written after ``since``; as a path relative to ``root`` when inside it."""
    base = Path(params.get("output_dir", "runs"))
    base = base if base.is_absolute() else root / base
    found = [p for p in base.glob(f"{name}-*/metrics.json") if p.stat().st_mtime >= since - 1]
    if not found:
        return None
    d = max(found, key=lambda p: p.stat().st_mtime).parent
    try:
        return str(d.relative_to(root))
    except ValueError:
        return str(d)


def quiet_environment() -> None:
    """Progress bars and library chatter are for interactive use; in the published book
    they are noise on stderr. Set (unless the user set them) before a kernel starts."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")


def git(*args, root: Path = ROOT) -> str:
    """``git args`` in ``root``, its output stripped; "" when git or the repository is missing."""
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def run_stamp(root: Path = ROOT) -> dict:
    """What a result was computed with: the commit (``+uncommitted changes`` when
    ``kbnb/`` or ``notebooks/`` differ from it), the date, and the library's file hashes."""
    dirty = bool(git("status", "--porcelain", "--", "kbnb", "notebooks", root=root))
    return {"commit": git("rev-parse", "HEAD", root=root) + ("+uncommitted changes" if dirty else ""),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "library_files": library_files()}


def execute(name: str, params: dict, out_dir: Path, root: Path = ROOT, force: bool = False,
            timeout: int = 1800, extra_hash: str = "") -> bool:
    """Execute ``notebooks/<name>.ipynb`` into ``out_dir/<name>.ipynb`` with papermill.

    extra_hash: the hashes of the chapters this one depends on (a change there makes
    this copy stale). Returns False when the cached copy is current and nothing ran."""
    import nbformat
    import papermill as pm

    source = root / "notebooks" / f"{name}.ipynb"
    if not source.exists():
        raise FileNotFoundError(f"_toc.yml lists book/chapters/{name} but {source} is missing")
    target = out_dir / f"{name}.ipynb"
    key = run_hash(source, params, extra_hash)
    if not force and target.exists() and _stored_hash(target) == key:
        print(f"[kbnb.book] {name}: unchanged, not executed again")
        return False
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    print(f"[kbnb.book] {name}: executing with {params}", flush=True)
    tmp = out_dir / f".{name}.running.ipynb"
    stamp = run_stamp(root)
    quiet_environment()
    pm.execute_notebook(str(source), str(tmp), parameters=params, cwd=str(root),
                        kernel_name="python3", progress_bar=False, log_output=False,
                        execution_timeout=timeout)
    nb = nbformat.read(tmp, as_version=4)
    nb.metadata["kbnb"] = {"hash": key, "params": params, "seconds": round(time.time() - t0, 1),
                           "run_dir": _find_run_dir(name, params, root, t0), "stamp": stamp}
    nbformat.write(nb, target)
    tmp.unlink()
    print(f"[kbnb.book] {name}: done in {time.time() - t0:.0f}s", flush=True)
    return True


def inputs_hash(name: str, params: dict, root: Path = ROOT) -> str:
    """SHA-256 (12 hex) of the files a chapter reads besides its upstream runs (its
    ``SPEC.inputs``: names and bytes, folders recursively); "" when it declares none."""
    spec = spec_of(name)
    if spec.inputs is None or spec.params is None:
        return ""
    try:
        paths = spec.inputs(spec.params.from_dict(params, strict=False))
    except ValueError:
        return ""
    if not paths:
        return ""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p) if Path(p).is_absolute() else root / p
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else \
            ([p] if p.is_file() else [])
        for f in files:
            h.update(str(f.relative_to(root) if f.is_relative_to(root) else f).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def chapter_params(name: str, params: dict, names: list[str], out_dir: Path,
                   root: Path = ROOT) -> tuple[dict, str]:
    """A chapter's papermill parameters with its upstream run folders filled in (unless
    the YAML sets them), and the hash of its upstream chapters' executed copies and of
    its other inputs (:func:`inputs_hash`)."""
    p = dict(params.get(name) or {})
    extra = []
    own = inputs_hash(name, p, root)
    if own:
        extra.append(f"inputs:{own}")
    for u, param in upstream(name, names).items():
        meta = _stored(out_dir / f"{u}.ipynb")
        extra.append(f"{u}:{meta.get('hash')}")
        if param and param not in p:
            if not meta.get("run_dir"):
                raise SystemExit(f"[kbnb.book] {name} needs the run folder of {u} (parameter "
                                 f"{param}), but book/chapters/{u}.ipynb has none: execute {u} "
                                 f"first (python -m kbnb.book --only {u} {name})")
            p[param] = meta["run_dir"]
    return p, ";".join(extra)


def load_params(path: Path) -> dict:
    data = yaml.safe_load(Path(path).read_text()) if path else {}
    return data or {}


def build_html(root: Path = ROOT, strict: bool = True) -> Path:
    """Run ``jupyter-book build`` on ``root``; returns the HTML index path."""
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root)]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True)
    return root / "_build" / "html" / "index.html"


# ---- parallel execution ---------------------------------------------------------------

# Seconds an organism took to train in a cold build (2 cores); only the scheduling order
# uses them (longest remaining chain first). Chapters declare theirs in SPEC.cost.
ORGANISM_COST_HINT = {"": 150, "retain": 140}


def notebook_defaults(source: Path) -> dict:
    """The literal values the notebook's ``parameters`` cell assigns (``{name: value}``)."""
    import ast

    import nbformat
    nb = nbformat.read(source, as_version=4)
    cell = next((c for c in nb.cells if "parameters" in c.metadata.get("tags", [])), None)
    out = {}
    for node in ast.parse(cell.source if cell else "").body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def organisms_for(name: str, params: dict, root: Path = ROOT) -> list:
    """The ``OrganismConfig``s chapter ``name`` trains or loads with these parameters
    (its own ones over its ``Params`` defaults, read from its ``SPEC``); [] when it runs on
    another model or its parameters are invalid (the chapter itself reports them)."""
    spec = spec_of(name)
    if spec.params is None:
        return []
    try:
        p = spec.params.from_dict(params, strict=False)
        config = parse_organism_name(getattr(p, "model_name", ""))
    except ValueError:
        return []
    if config is None:
        return []
    if spec.recipe:  # the organism chapter sets the recipe's size
        config = replace(config, **{k: getattr(p, k) for k in spec.recipe})
    out = [config]
    split = spec.retain_split(p) if spec.retain_split else None
    if split and getattr(p, "dataset", "tinyworld") == "tinyworld":
        out.append(replace(config, retain=split))
    return out


class Task:
    """One unit of the build: train an organism, or execute a chapter."""

    def __init__(self, key, cmd, deps=(), cost=60.0, exclusive=False, all_cores=False):
        # cmd: the argument list, or a function returning it when the task starts (a
        # chapter's parameters include its upstream chapters' run folders). all_cores: it
        # may use every core beside the others (a training loop that adapts its threads)
        self.key, self.cmd, self.deps = key, cmd, set(deps)
        self.cost, self.exclusive, self.all_cores = float(cost), exclusive, all_cores
        self.proc, self.t0, self.status = None, 0.0, "waiting"


def _priorities(tasks: dict) -> dict:
    """Longest chain of estimated seconds from each task to the end of the build."""
    below = {k: [t for t in tasks.values() if k in t.deps] for k in tasks}
    memo = {}

    def chain(k):
        if k not in memo:
            memo[k] = tasks[k].cost + max((chain(t.key) for t in below[k]), default=0.0)
        return memo[k]

    return {k: chain(k) for k in tasks}


def _say(message: str) -> None:
    print(message, flush=True)


def run_tasks(tasks: dict, jobs: int, cores: int, log=_say, poll: float = 0.2) -> dict:
    """Run ``tasks`` (key -> Task) as subprocesses, at most ``jobs`` at once, each after
    its dependencies, longest remaining chain first. A task marked ``exclusive`` (the
    organism every chapter waits for) runs alone with every core; the others get
    ``cores // jobs`` threads each (small models run faster on one thread per process
    than on two threads, see benchmarks/threads.py). A failed task skips what depends on
    it; the rest of the build goes on, so nothing already computed is lost.
    Returns ``{key: "done" | "failed" | "skipped"}``."""

    prio = _priorities(tasks)
    running = []
    user_threads = os.environ.get("OMP_NUM_THREADS")
    while True:
        for t in list(running):
            rc = t.proc.poll()
            if rc is None:
                continue
            running.remove(t)
            t.status = "done" if rc == 0 else "failed"
            log(f"[kbnb.book] {t.key}: {t.status} after {time.time() - t.t0:.0f}s"
                + ("" if rc == 0 else f" (exit {rc}; see the error above)"))
        for t in tasks.values():
            if t.status == "waiting" and any(tasks[d].status in ("failed", "skipped")
                                             for d in t.deps if d in tasks):
                t.status = "skipped"
                log(f"[kbnb.book] {t.key}: skipped, it needs "
                    + ", ".join(d for d in t.deps if tasks.get(d) and tasks[d].status != "done"))
        ready = sorted((t for t in tasks.values() if t.status == "waiting"
                        and all(tasks[d].status == "done" for d in t.deps if d in tasks)),
                       key=lambda t: -prio[t.key])
        for t in ready:
            if len(running) >= jobs or any(r.exclusive for r in running):
                break
            if t.exclusive and running:
                break  # wait until it can have the machine to itself
            threads = cores if (t.exclusive or t.all_cores or jobs == 1) else max(1, cores // jobs)
            env = dict(os.environ)
            if not user_threads:
                env["OMP_NUM_THREADS"] = str(threads)
                if (t.exclusive or jobs == 1) and threads_module.SPINCOUNT_IS_KBNBS:
                    env["GOMP_SPINCOUNT"] = "300000"  # alone: idle threads may spin (faster)
            t.t0 = time.time()
            try:
                cmd = t.cmd() if callable(t.cmd) else t.cmd
            except (Exception, SystemExit) as e:  # e.g. an upstream run folder is missing
                t.status = "failed"
                log(f"[kbnb.book] {t.key}: failed before it started: {e}")
                continue
            log(f"[kbnb.book] {t.key}: started, {env.get('OMP_NUM_THREADS', 'default')} "
                f"thread(s), {len(running) + 1} job(s) running")
            t.status, t.proc = "running", subprocess.Popen(cmd, env=env)
            running.append(t)
        if not running:
            return {k: t.status if t.status != "waiting" else "skipped" for k, t in tasks.items()}
        time.sleep(poll)


def _organism_task_key(config) -> str:
    return f"organism {organism_path(config).name}"


def build_tasks(order: list[str], params: dict, names: list[str], out_dir: Path, root: Path,
                force: bool = False, timeout: int = 1800) -> dict:
    """Tasks for the chapters in ``order`` (and the organisms they need that are not
    cached yet), each a ``python -m kbnb.book`` subprocess."""
    tasks = {}
    for name in order:
        deps = {u for u in upstream(name, names) if u in order}
        for config in organisms_for(name, params.get(name) or {}, root):
            key = _organism_task_key(config)
            if not (organism_path(config) / "kbnb_organism.json").exists():
                if key not in tasks:
                    tasks[key] = Task(key, [sys.executable, "-m", "kbnb.book", "--organism",
                                            json.dumps(asdict(config))],
                                      cost=ORGANISM_COST_HINT["retain" if config.retain else ""],
                                      all_cores=not config.retain)
                deps.add(key)

        def cmd(name=name):
            p, extra = chapter_params(name, params, names, out_dir, root)
            return [sys.executable, "-m", "kbnb.book", "--root", str(root), "--out",
                    str(out_dir), "--chapter",
                    json.dumps({"name": name, "params": p, "extra_hash": extra,
                                "force": force, "timeout": timeout})]

        stored = _stored(out_dir / f"{name}.ipynb").get("seconds")
        tasks[name] = Task(name, cmd, deps, cost=stored or spec_of(name).cost)
    return tasks


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="book/params.yml", help="YAML: notebook name -> parameters")
    ap.add_argument("--root", default=str(ROOT), help="book root (holds _toc.yml)")
    ap.add_argument("--only", nargs="*", help="execute only these notebooks")
    ap.add_argument("--force", action="store_true", help="execute even when cached")
    ap.add_argument("--no-html", action="store_true", help="execute notebooks, skip the HTML build")
    ap.add_argument("--cell-timeout", type=int, default=1800,
                    help="seconds one notebook cell may run (real models at full size need more)")
    ap.add_argument("--out", default="book/chapters",
                    help="folder (under --root) for the executed notebooks; the HTML is built "
                         "only from book/chapters")
    ap.add_argument("--jobs", type=int, default=None,
                    help="chapters executed at once (default: 2 where 2 cores or more, else 1; "
                         "use 1 for a model that fills the GPU or the memory)")
    ap.add_argument("--chapter", help=argparse.SUPPRESS)   # internal: execute one chapter
    ap.add_argument("--organism", help=argparse.SUPPRESS)  # internal: train one organism
    args = ap.parse_args(argv)
    if args.organism:
        t0 = time.time()
        path = build_organism(OrganismConfig(**json.loads(args.organism)), progress=False)
        print(f"[kbnb.book] trained {path.name} in {time.time() - t0:.0f}s", flush=True)
        return
    root = Path(args.root)
    out_dir = root / args.out
    if args.chapter:
        job = json.loads(args.chapter)
        execute(job["name"], job["params"], out_dir, root=root, force=job["force"],
                timeout=job.get("timeout", 1800), extra_hash=job["extra_hash"])
        return
    if out_dir.resolve() != (root / "book" / "chapters").resolve() and not args.no_html:
        raise SystemExit(f"--out {args.out}: the HTML is built from book/chapters only; "
                         "pass --no-html to execute elsewhere")
    params = load_params(root / args.params if not Path(args.params).is_absolute() else Path(args.params))
    names = toc_chapters(root)
    unknown = set(params) - set(names)
    if unknown:
        raise SystemExit(f"{args.params} names notebooks not in _toc.yml: {sorted(unknown)} "
                         f"(allowed: {names})")
    if args.only:
        bad = sorted(set(args.only) - set(names))
        if bad:
            raise SystemExit(f"--only {' '.join(bad)}: not in _toc.yml (allowed: {', '.join(names)})")
    cores = available_cores()
    jobs = args.jobs if args.jobs is not None else min(2, cores)
    if jobs < 1:
        raise SystemExit(f"--jobs {jobs}: allowed 1 or more")
    selected = set(args.only or names)
    order = []
    for name in in_order(names):
        if args.only and any(u in selected for u in upstream(name, names)):
            selected.add(name)  # a chapter that builds on a re-executed one runs again too
        if name in selected:
            order.append(name)
    t0 = time.time()
    quiet_environment()
    if args.cell_timeout < 1:
        raise SystemExit(f"--cell-timeout {args.cell_timeout}: allowed 1 or more (seconds)")
    status = run_tasks(build_tasks(order, params, names, out_dir, root, args.force,
                                   args.cell_timeout), jobs, cores)
    failed = sorted(k for k, s in status.items() if s != "done")
    print(f"[kbnb.book] executed in {time.time() - t0:.0f}s with {jobs} job(s) on {cores} "
          f"core(s)", flush=True)
    if failed:
        raise SystemExit("[kbnb.book] not building the HTML: " + ", ".join(
            f"{k} {status[k]}" for k in failed) + ". The other chapters' results are kept; "
            "fix the error above and run again (finished chapters are not executed again).")
    stale = []
    for name in names:
        if name in selected:
            continue
        try:
            p, extra = chapter_params(name, params, names, out_dir, root)
        except SystemExit:
            stale.append(name)
            continue
        source = root / "notebooks" / f"{name}.ipynb"
        if _stored_hash(out_dir / f"{name}.ipynb") != run_hash(source, p, extra):
            stale.append(name)
    if stale and not args.no_html:
        raise SystemExit(
            "[kbnb.book] not building the HTML: the executed copies of "
            + ", ".join(stale) + " are missing or stale (their source, parameters, the library "
            "or a chapter they depend on changed). Re-run without --only, add them to --only, "
            "or pass --no-html to execute only.")
    if not args.no_html:
        index = build_html(root)
        print(f"[kbnb.book] built {index}")


if __name__ == "__main__":
    main()
