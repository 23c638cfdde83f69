"""Reading a model's facts from its files: equal to what the loaded encoder reports, without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from digest_rag.dense.embedding_cache import ModelIdentity
from digest_rag.dense.model_files import inspect_model, token_counter
from digest_rag.testing import corpus_texts

ROOT = Path(__file__).resolve().parents[2]


def test_facts_match_the_loaded_encoder(tiny_model: Path, tiny_encoder, seed_corpus: Path) -> None:  # noqa: ANN001
    facts = inspect_model(str(tiny_model))
    assert facts is not None
    enc = tiny_encoder
    assert (facts.name, facts.revision, facts.dimension, facts.max_seq_length, facts.passage_prefix) == (
        enc.name, enc.revision, enc.dimension, enc.max_seq_length, enc.passage_prefix)
    assert ModelIdentity.of(facts, "torch") == ModelIdentity.of(enc, enc.backend)
    count = token_counter(facts)
    for text in corpus_texts([seed_corpus])[:40]:
        for piece in (text[:80], text[:2000], text):
            assert count(piece) == enc.count_tokens(piece)


def test_inspecting_never_imports_torch(tiny_model: Path) -> None:
    code = (
        "import sys; from digest_rag.dense.model_files import inspect_model, token_counter; "
        f"f = inspect_model({str(tiny_model)!r}); assert f is not None; token_counter(f)('스케일링 법칙'); "
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_unusual_models_are_left_to_the_real_loader(tiny_model: Path, tmp_path: Path) -> None:
    """Anything this reader cannot vouch for returns None, so the build loads the model instead."""
    assert inspect_model(str(tmp_path / "absent")) is None
    odd = tmp_path / "odd"
    shutil.copytree(tiny_model, odd)
    modules = json.loads((odd / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Custom", "type": "somewhere.CustomLayer"})
    (odd / "modules.json").write_text(json.dumps(modules))
    assert inspect_model(str(odd)) is None
    prompted = tmp_path / "prompted"
    shutil.copytree(tiny_model, prompted)
    cfg = json.loads((prompted / "config_sentence_transformers.json").read_text())
    cfg["prompts"] = {"query": "Represent this question: "}
    (prompted / "config_sentence_transformers.json").write_text(json.dumps(cfg))
    assert inspect_model(str(prompted)) is None
    no_tok = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_model, no_tok)
    (no_tok / "tokenizer.json").unlink()
    assert inspect_model(str(no_tok)) is None
