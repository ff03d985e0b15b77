"""The API reference (mkdocs-material + mkdocstrings, from the docstrings) builds in strict mode: a page that
names a missing object, a docstring griffe cannot parse or a broken link fails the suite."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_in_strict_mode(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml")]
        + ["--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    pages = {p.parent.name for p in (tmp_path / "site" / "api").glob("*/index.html")}
    assert {"particles", "particles_io", "hessian", "simulations"} <= pages
    html = (tmp_path / "site" / "api" / "particles" / "index.html").read_text()
    assert 'id="particles.simulate"' in html  # re-exported names are documented, not just listed
