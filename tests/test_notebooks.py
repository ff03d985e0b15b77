"""The notebooks in notebooks/ run top to bottom without an error (nbclient, a fresh kernel each, in a
temporary folder), and the copies in the repository are executed ones: they show their figures."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _images(notebook):
    return sum("image/png" in out.get("data", {}) for cell in notebook.cells for out in cell.get("outputs", []))


def test_the_notebooks_are_there():
    assert [p.stem for p in NOTEBOOKS] == [
        "01_particles",
        "02_phase_diagram",
        "03_metastability",
        "04_histograms",
        "05_curvature",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_shows_its_figures(path, tmp_path, monkeypatch):
    stored = nbformat.read(path, as_version=4)
    assert _images(stored) >= 1, f"{path.name} is stored without its figures: execute it before committing"
    fresh = nbformat.read(path, as_version=4)
    for cell in fresh.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    # The kernel imports this checkout's packages, whatever is installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    # Raises CellExecutionError, with the cell and its traceback, on the first failing cell.
    NotebookClient(fresh, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert _images(fresh) == _images(stored)
