"""Model building and loading draw no Hugging Face progress bars unless asked (issue 22 item 10: the notebook's
outputs showed "Writing model shards" and "Loading weights"), and leave the bars' settings as they found them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import PROGRESS_BAR


def test_tiny_model_build_and_load_print_no_progress_bars(hf_progress_bars_on: None, seed_corpus: Path,
                                                          tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from transformers.utils import logging as tf_logging

    from digest_rag.dense.encoder import Encoder
    from digest_rag.testing import build_tiny_model, corpus_texts

    model = build_tiny_model(tmp_path / "tiny", corpus_texts([seed_corpus])[:200])
    encoder = Encoder.load(str(model), device="cpu")
    assert encoder.encode_queries(["스케일링 법칙"]).shape[0] == 1
    out, err = capfd.readouterr()
    assert not re.search(PROGRESS_BAR, out + err), err
    assert tf_logging.is_progress_bar_enabled()  # put back: a download the user starts still shows its bar


def test_no_progress_bars_puts_back_what_was_set(hf_progress_bars_on: None) -> None:
    from transformers.utils import logging as tf_logging

    from digest_rag.dense.quiet import no_progress_bars

    with no_progress_bars():
        assert not tf_logging.is_progress_bar_enabled()
    assert tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()
    with no_progress_bars():
        pass
    assert not tf_logging.is_progress_bar_enabled()  # off stays off
