"""The model card `digest-rag train` writes: README.md of the model directory, from its `TrainReport`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from digest_rag.dense.training.trainer import TrainReport

__all__ = ["card_text", "write_card"]


def _check_row(name: str, check: object) -> str:
    if check is None:
        return f"| {name} | - | - | - |"
    return f"| {name} | {check.queries} | {check.recall_at_1:.3f} | {check.mrr_at_10:.3f} |"  # type: ignore[attr-defined]


def card_text(report: TrainReport) -> str:
    """Markdown: base, data counts, held-out figures, seed, versions, and how to use the model."""
    counts = "\n".join(f"| {k} | {v} | {report.heldout_pair_counts.get(k, 0)} |" for k, v in report.pair_counts.items())
    loss = (f"{report.heldout_loss_before} -> {report.heldout_loss_after}"
            if report.heldout_loss_before is not None else "n/a (too few held-out papers)")
    return f"""---
library_name: sentence-transformers
tags: [sentence-transformers, digest_rag, cross-lingual, korean, english]
---

# Digest encoder trained by `digest-rag train`

- **Base:** {report.base}
- **Seed:** {report.seed} (the same seed on the same corpus gives the same model)
- **digest_rag version:** {report.library_version}
- **Papers:** {report.papers} parsed; {report.train_papers} trained on, {report.heldout_papers} held out,
  {report.excluded_papers} left out (`--exclude-eval`)
- **Steps:** {report.steps} (batch {report.options.batch_size}, term share {report.options.term_share}); {report.seconds} s

## Training pairs

| kind | train | held out |
|---|---|---|
{counts}

## Held-out figures

Loss (symmetric multiple-negatives ranking) on one pair per held-out paper: {loss}.

Self-check: each held-out paper's first Korean passage as the query, every paper's English text
(title and abstract) as the candidates.

| model | queries | R@1 | MRR@10 |
|---|---|---|---|
{_check_row("start", report.selfcheck_before)}
{_check_row("trained", report.selfcheck_after)}

## Use

```
digest-rag build corpus/ --index indexes/trained --model {report.out}
digest-rag search "스케일링 법칙" --index indexes/trained
```

The full report is `digest_rag_train.json` beside this card.
"""


def write_card(model_dir: Path, report: TrainReport) -> None:
    """Write README.md (replacing sentence-transformers' generic card)."""
    (model_dir / "README.md").write_text(card_text(report), encoding="utf-8")
