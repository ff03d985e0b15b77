"""The README's Python snippets run as written, in order, in one namespace (as a reader pasting them into one
session would), inside a temporary folder so that the files they write (run.h5, flow.h5) start absent."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_snippets(text):
    """(first line number, code) of every fenced ``python`` block, in order."""
    return [(text[: m.start(1)].count("\n") + 1, m.group(1)) for m in FENCE.finditer(text)]


def test_snippets_are_found():
    text = "intro\n```python\nx = 1\n```\n\n```bash\nls\n```\n```python\ny = x + 1\n```\n"
    assert python_snippets(text) == [(3, "x = 1\n"), (10, "y = x + 1\n")]


def test_readme_python_snippets_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    snippets = python_snippets(README.read_text())
    assert len(snippets) >= 5, "the README's Python snippets were not found"
    namespace = {"__name__": "__readme__"}
    for line, code in snippets:
        # Padded so that a traceback names the README's own line numbers.
        exec(compile("\n" * (line - 1) + code, str(README), "exec"), namespace)
    assert (tmp_path / "run.h5").is_file() and (tmp_path / "flow.h5").is_file()
