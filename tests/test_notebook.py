"""notebooks/quickstart.ipynb executes top to bottom, offline, with a table and a plot in its outputs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("pandas")


def test_first_cell_names_an_install_that_exists(repo_root: Path) -> None:
    """Issue 22 item 10: the notebook needs pandas, matplotlib and ipykernel, which the main install lacks."""
    import re
    import tomllib

    nb = nbformat.read(repo_root / "notebooks" / "quickstart.ipynb", as_version=4)
    assert 'pip install "digest-rag[notebook]"' in "".join(nb.cells[0].source)
    extras = tomllib.loads((repo_root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    names = {re.split(r"[<>=\[ ]", req)[0] for req in extras["notebook"]}
    assert {"pandas", "matplotlib", "ipykernel", "nbclient", "datasets", "accelerate"} <= names


def test_quickstart_notebook_runs(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel inherits this environment: no hub, no display, no model override.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.delenv("DIGEST_RAG_MODEL", raising=False)
    path = repo_root / "notebooks" / "quickstart.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    t0 = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    assert time.perf_counter() - t0 < 240
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "model: " in text and "29 papers" in text  # says which model it chose; indexed the seed corpus
    assert "fusion: dense=" in text  # the model trained in the notebook: its index's calibrated fusion
    html = [o["data"]["text/html"] for o in outputs if o.output_type in ("display_data", "execute_result")
            and "text/html" in o.get("data", {})]
    assert any("Scaling Laws" in h for h in html)  # the results table of the Korean scaling question
    assert any("hybrid" in h and "lexical" in h and "dense" in h for h in html)  # the mode comparison
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plot
    markdown = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert markdown and "**" in markdown[0]  # highlighted snippets
    assert not list(repo_root.glob("notebooks/index*")) and not (repo_root / "notebooks" / "indexes").exists()
