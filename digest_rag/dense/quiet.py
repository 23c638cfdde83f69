"""Hugging Face progress bars off while the library loads, saves or trains a model nobody asked to watch.

transformers draws "Loading weights" when it reads a model from disk and "Writing model shards" when it saves
one; datasets draws its own bars. In a terminal they flash by; in a notebook or a log they stay as stderr lines.
`no_progress_bars` turns them off for one block and puts back whatever was set before (the CLI turns them off
for the whole process through HF_HUB_DISABLE_PROGRESS_BARS).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["no_progress_bars"]


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """transformers', huggingface_hub's and (when imported) datasets' progress bars off inside the block."""
    from huggingface_hub import utils as hub
    from transformers.utils import logging as tf_logging

    transformers_on = tf_logging.is_progress_bar_enabled()
    hub_on = not hub.are_progress_bars_disabled()
    datasets_bars = _datasets_bars()
    datasets_on = datasets_bars is not None and not datasets_bars.are_progress_bars_disabled()
    with warnings.catch_warnings():  # hub's "HF_HUB_DISABLE_PROGRESS_BARS has priority": that setting wins, quietly
        warnings.simplefilter("ignore")
        tf_logging.disable_progress_bar()  # hub's too
        if datasets_on:
            datasets_bars.disable_progress_bars()  # type: ignore[union-attr]
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if transformers_on:
                tf_logging.enable_progress_bar()  # turns hub's on as well: hub's own setting is put back below
            if hub_on:
                hub.enable_progress_bars()
            else:
                hub.disable_progress_bars()
            if datasets_on:
                datasets_bars.enable_progress_bars()  # type: ignore[union-attr]


def _datasets_bars():  # noqa: ANN202 - the module, or None
    """datasets' progress-bar switches when datasets is already imported (it is never imported for this: 1 s)."""
    if "datasets" not in sys.modules:
        return None
    from datasets import utils as datasets_bars

    return datasets_bars
