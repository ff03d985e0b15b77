"""Plant each bug of ``benchmarks/mutations.py`` in a temporary copy and check a test fails.

A test suite earns trust by failing on wrong code. Each entry of ``MUTATIONS`` is a plausible
bug: one exact snippet of one file, replaced by a wrong one, and the few tests that must
notice it. For every entry this script edits the snippet in one temporary copy of the
repository (never the checkout), runs those tests there, restores the file, and prints

    <id>  <file>  caught by <first failing test>    or    SURVIVED

ending with ``mutations: N, survived: K``. A snippet not found exactly once, a test id that
no longer exists or a run past the time limit counts as survived, so the list cannot rot
silently. Before mutating, the listed tests run once on the unmodified copy: a test that
fails there would "catch" every bug, so the script stops instead.

    python benchmarks/mutation_check.py                 # the whole list
    python benchmarks/mutation_check.py --only usa_for_sa half_beta
    python benchmarks/mutation_check.py --list
    python benchmarks/mutation_check.py --only half_beta --all-failures   # curating: every
        failing test, not just the first

Exit status: 0 when every mutation is caught, 1 when any survived, 2 when the unmodified
copy already fails.

The copy holds the git-tracked and untracked, non-ignored files plus the ``__pycache__``
folders, with their modification times, so Numba's on-disk cache stays valid for every
file not mutated. Numba does not track dependencies between files: when a file is mutated,
the cache entries of the modules that import it are set aside too, and restored afterwards.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutations import MUTATIONS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
REQUIRED_KEYS = {"id", "file", "old", "new", "tests", "description"}
# A mutation whose tests run longer than this counts as survived (pick faster tests).
DEFAULT_TIMEOUT_S = 300
_NUMBA_CACHE = re.compile(r"\.nb[ic]$")


def copy_repository(dest):
    """The files git would see (tracked, and untracked but not ignored) and the
    ``__pycache__`` folders, with modification times, into ``dest``."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True, capture_output=True
        )
        .stdout.decode()
        .split("\0")
    )
    folders = set()
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
            folders.add(Path(rel).parent)
    for folder in folders:
        if (REPO / folder / "__pycache__").is_dir():
            shutil.copytree(REPO / folder / "__pycache__", dest / folder / "__pycache__", dirs_exist_ok=True)


def copy_environment(copy):
    """Environment in which ``python`` imports the copy's packages, not the editable
    install of the checkout (the editable finder comes after PYTHONPATH)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_imports_copy(copy, env):
    code = "import particles, hessian; print(particles.__file__); print(hessian.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=copy, env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    for path in out:
        if not Path(path).resolve().is_relative_to(copy.resolve()):
            sys.exit(f"the copy would import {path}, not its own packages: aborting")
    print(f"packages imported from the copy: {out[0]}", flush=True)


def run_tests(copy, env, tests, *, timeout, stop_first=True):
    """(status, failing nodes): status 'passed', 'failed', 'timeout' or 'error: ...'."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE"]
    cmd += ["-x"] if stop_first else []
    try:
        proc = subprocess.run(cmd + list(tests), cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", []
    out = proc.stdout + proc.stderr
    failing = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, flags=re.MULTILINE)
    if proc.returncode == 0:
        return "passed", []
    if proc.returncode == 1 and failing:
        return "failed", list(dict.fromkeys(failing))
    # 2 (collection error), 4 (a test id not found), 5 (no tests): say why.
    lines = [line for line in out.splitlines() if "rror" in line or "not found" in line]
    return f"error: pytest exit {proc.returncode}: {' | '.join(lines[-3:])[:300]}", failing


def importers(copy, path):
    """Python files of the same package that import the module at ``path``."""
    stem = path.stem
    pattern = re.compile(rf"from \.{stem} import|from \. import [^\n]*\b{stem}\b|import \S*\.{stem}\b")
    return [p for p in path.parent.glob("*.py") if p != path and pattern.search(p.read_text())]


def set_aside_numba_cache(modules, backup):
    """Move the Numba cache entries of ``modules`` to ``backup``; returns what moved."""
    moved = []
    for module in modules:
        cache = module.parent / "__pycache__"
        for entry in cache.glob(f"{module.stem}.*") if cache.is_dir() else []:
            if _NUMBA_CACHE.search(entry.name):
                shutil.move(entry, backup / f"{len(moved)}")
                moved.append(entry)
    return moved


def restore_numba_cache(modules, moved, backup):
    for module in modules:
        cache = module.parent / "__pycache__"
        for entry in cache.glob(f"{module.stem}.*") if cache.is_dir() else []:
            if _NUMBA_CACHE.search(entry.name):
                entry.unlink()
    for k, entry in enumerate(moved):
        shutil.move(backup / f"{k}", entry)


def check_mutation(copy, env, mutation, *, all_failures):
    """One line of the report and whether the bug survived."""
    path = copy / mutation["file"]
    head = f"{mutation['id']:<34} {mutation['file']:<44}"
    if not path.is_file():
        return f"{head} SURVIVED (error: file not found)", True
    original = path.read_bytes()
    text = original.decode()
    count = text.count(mutation["old"])
    if count != 1:
        return f"{head} SURVIVED (error: snippet found {count} times, expected once)", True
    stat = path.stat()
    modules = [path] + importers(copy, path)
    with tempfile.TemporaryDirectory() as backup:
        moved = set_aside_numba_cache(modules, Path(backup))
        try:
            path.write_text(text.replace(mutation["old"], mutation["new"]))
            status, failing = run_tests(
                copy,
                env,
                mutation["tests"],
                timeout=mutation.get("timeout", DEFAULT_TIMEOUT_S),
                stop_first=not all_failures,
            )
        finally:
            path.write_bytes(original)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            restore_numba_cache(modules, moved, Path(backup))
    if status == "failed":
        return f"{head} caught by {', '.join(failing) if all_failures else failing[0]}", False
    if status == "passed":
        return f"{head} SURVIVED", True
    return f"{head} SURVIVED ({status})", True


def validate(mutations):
    ids = [m.get("id") for m in mutations]
    for m in mutations:
        missing = REQUIRED_KEYS - m.keys()
        if missing:
            sys.exit(f"mutation {m.get('id')!r} lacks {sorted(missing)}")
        if m["old"] == m["new"]:
            sys.exit(f"mutation {m['id']!r}: the new snippet equals the old one")
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        sys.exit(f"duplicate mutation ids: {sorted(duplicates)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="ID", help="check only these mutations")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument(
        "--all-failures", action="store_true", help="run all of a mutation's tests and list every failure (curating)"
    )
    parser.add_argument(
        "--tests", nargs="+", metavar="NODE", help="run these tests instead of each mutation's own (curating)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help=f"seconds per mutation before it counts as survived (default: the entry's timeout or {DEFAULT_TIMEOUT_S})",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the run of the tests on the unmodified copy")
    args = parser.parse_args()
    validate(MUTATIONS)
    selected = MUTATIONS
    if args.only:
        unknown = set(args.only) - {m["id"] for m in MUTATIONS}
        if unknown:
            sys.exit(f"unknown mutation ids: {sorted(unknown)}")
        selected = [m for m in MUTATIONS if m["id"] in args.only]
    if args.tests:
        selected = [dict(m, tests=args.tests) for m in selected]
    if args.timeout:
        selected = [dict(m, timeout=args.timeout) for m in selected]
    if args.list:
        for m in selected:
            print(f"{m['id']:<34} {m['file']:<44} {m['description']}")
        return 0
    # A kill runs the clean-up: the test run is stopped and the copy deleted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mutation_check_") as tmp:
        copy = Path(tmp)
        copy_repository(copy)
        env = copy_environment(copy)
        check_imports_copy(copy, env)
        if not args.no_baseline:
            tests = list(dict.fromkeys(t for m in selected for t in m["tests"]))
            status, failing = run_tests(copy, env, tests, timeout=4 * DEFAULT_TIMEOUT_S, stop_first=False)
            if status != "passed":
                print(
                    f"the unmodified copy does not pass the listed tests ({status})"
                    + (f": {', '.join(failing)}" if failing else "")
                )
                return 2
            print(f"baseline: {len(tests)} tests pass unmodified", flush=True)
        survived = 0
        for mutation in selected:
            line, bad = check_mutation(copy, env, mutation, all_failures=args.all_failures)
            survived += bad
            print(line, flush=True)
    print(f"({time.perf_counter() - start:.0f} s)")
    print(f"mutations: {len(selected)}, survived: {survived}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
