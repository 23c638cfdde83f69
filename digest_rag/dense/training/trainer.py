"""`train_encoder`: mine pairs, train with sentence-transformers' own trainer, self-check, write the model atomically.

Training is `SentenceTransformerTrainer` with the symmetric multiple-negatives
ranking loss (the cached variant for transformer bases, whose batches would not
fit in memory otherwise): every pair's other side is the positive, the other
pairs of the batch are the negatives. Batches are planned by `PaperBatches`:
at most one pair per paper (two pairs of one paper would be each other's false
negatives) and a share of term pairs (glossary, mined lexicon) from distinct
concepts in every batch, which is what teaches a Korean term its English form.

The run is seeded (torch, the batch plan, the SVD start) and single-process, so
the same seed on the same data gives the same model. The directory is written
under a temporary name beside ``out`` and renamed into place when complete, so
a killed training leaves no half-written model at ``out``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from digest_rag.dense.training.pairs import (
    MinedPairs,
    Pair,
    english_text,
    excluded_papers,
    hold_out_sentences,
    korean_text,
    mine_pairs,
    passages,
)
from digest_rag.errors import UsageError
from digest_rag.models import PASSAGE_PREFIX, QUERY_PREFIX, Paper

log = logging.getLogger(__name__)

__all__ = ["TrainOptions", "TrainReport", "train_encoder"]

REPORT_FILE = "digest_rag_train.json"
#: The --static learning rate (TrainOptions.learning_rate).
STATIC_LR = 0.05  # docs/EVAL.md "The learning rate back to 0.05": 0.5 gave a weaker dense side on tune
INSTALL_HINT = "digest-rag train needs the 'train' extra: pip install 'digest-rag[train]' (datasets, accelerate)"


class TrainOptions(BaseModel):
    """How `train_encoder` trains; the defaults are the measured `--static` recipe (README)."""

    static: bool = Field(default=True, description="start from a corpus-trained StaticEmbedding (else from base)")
    base: str | None = Field(default=None, description="sentence-transformers model name or path to fine-tune")
    seed: int = 0
    #: 300 steps of 1,024 pairs: on seeds + ml-papers (1,144 training papers) that is ~270 passes over each paper;
    #: 600 steps took twice the time for no better self-check (R@1 0.148 vs 0.133, MRR@10 0.201 vs 0.211).
    steps: int = Field(default=300, ge=1)
    batch_size: int = Field(default=1024, ge=2, description="pairs per batch (papers + term pairs)")
    term_share: float = Field(default=0.25, ge=0.0, lt=1.0, description="share of each batch given to term pairs")
    #: 0.5 for --static (chosen on the tuning questions and calibration figures, docs/EVAL.md issue 24: 0.05, 0.2,
    #: 0.3 and 0.5 tried; 0.5 gave the dense side most on questions its training never saw).
    learning_rate: float | None = Field(default=None, gt=0, description="default: 0.5 static, 2e-5 base")
    dim: int = Field(default=512, ge=8, description="static: vector width")
    vocab_size: int = Field(default=30_000, ge=100, description="static: WordPiece vocabulary")
    svd: bool = Field(default=True, description="static: start the token vectors from an SVD of the corpus")
    heldout_share: float = Field(default=0.1, ge=0.0, lt=0.5)
    mini_batch_size: int = Field(default=32, ge=1, description="base: cached loss mini-batch")
    calibration_sentences: int = Field(default=300, ge=0, description="training papers that keep one Korean "
                                       "sentence out of training, for a build's fusion calibration to ask")


class SelfCheck(BaseModel):
    """Held-out papers' Korean note as the query, every paper's English text as the candidates."""

    queries: int
    candidates: int
    recall_at_1: float
    mrr_at_10: float


class TrainReport(BaseModel):
    """What a training did: written to ``digest_rag_train.json`` and the model card."""

    out: str
    base: str
    seed: int
    library_version: str
    papers: int
    train_papers: int
    heldout_papers: int
    excluded_papers: int
    pair_counts: dict[str, int]
    heldout_pair_counts: dict[str, int]
    options: TrainOptions
    steps: int
    seconds: float
    heldout_loss_before: float | None = None
    heldout_loss_after: float | None = None
    selfcheck_before: SelfCheck | None = None
    selfcheck_after: SelfCheck | None = None
    heldout_paper_ids: list[str] = Field(default_factory=list, description="papers held out of training")
    heldout_sentences: dict[str, str] = Field(
        default_factory=dict, description="paper id -> a Korean sentence of it left out of training: the "
        "pseudo-queries a build's fusion calibration asks (search/calibration.py)")


def _require_train_extra() -> None:
    try:
        import accelerate  # noqa: F401
        import datasets  # noqa: F401
    except ImportError as exc:
        raise UsageError(INSTALL_HINT) from exc


class PaperBatches:
    """Batch plans: distinct papers, one pair each, plus term pairs of distinct concepts; reshuffled per epoch."""

    def __init__(self, pairs: Sequence[Pair], batch_size: int, term_share: float, seed: int) -> None:
        self.by_paper: dict[str, list[int]] = defaultdict(list)
        self.by_group: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(pairs):
            (self.by_paper[p.paper] if p.paper else self.by_group[p.group or f"t{i}"]).append(i)
        self.terms = min(len(self.by_group), round(batch_size * term_share)) if self.by_group else 0
        self.papers = max(1, min(batch_size - self.terms, len(self.by_paper))) if self.by_paper else 0
        if not self.papers:  # term pairs only
            self.terms = min(len(self.by_group), batch_size)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        if self.papers:
            return max(1, len(self.by_paper) // self.papers)
        return max(1, len(self.by_group) // max(1, self.terms))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        papers = sorted(self.by_paper)
        rng.shuffle(papers)
        groups = sorted(self.by_group)
        rng.shuffle(groups)
        g = 0
        for b in range(len(self)):
            batch = [rng.choice(self.by_paper[p]) for p in papers[b * self.papers:(b + 1) * self.papers]]
            for _ in range(self.terms):
                if g % len(groups) == 0:
                    rng.shuffle(groups)
                batch.append(rng.choice(self.by_group[groups[g % len(groups)]]))
                g += 1
            yield batch


def _sampler_factory(plan: PaperBatches, train_size: int) -> Callable[..., Any]:
    """The trainer's batch sampler: the plan for the training set, plain consecutive batches for evaluation."""
    try:
        from sentence_transformers.base.sampler import DefaultBatchSampler
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.sampler import DefaultBatchSampler

    class _Planned(DefaultBatchSampler):
        def __init__(self, dataset: Any, batch_size: int, drop_last: bool, *args: Any, **kwargs: Any) -> None:
            super().__init__(dataset, batch_size=batch_size, drop_last=drop_last)
            self._size = len(dataset)
            self._planned = self._size == train_size

        def set_epoch(self, epoch: int) -> None:
            if self._planned:
                plan.set_epoch(epoch)

        def __len__(self) -> int:
            return len(plan) if self._planned else math.ceil(self._size / self.batch_size)

        def __iter__(self) -> Iterator[list[int]]:
            if self._planned:
                return iter(plan)
            return (list(range(i, min(i + self.batch_size, self._size))) for i in range(0, self._size, self.batch_size))

    return _Planned


def self_check(encode_q: Callable[[list[str]], np.ndarray], encode_p: Callable[[list[str]], np.ndarray],
               heldout: Sequence[Paper], candidates: Sequence[Paper]) -> SelfCheck | None:
    """R@1 and MRR@10 of held-out papers' first Korean passage against every paper's English text."""
    queries = [(p.id, (passages(korean_text(p)) or [""])[0]) for p in heldout]
    queries = [(pid, q) for pid, q in queries if q]
    cands = [(p.id, english_text(p)) for p in candidates if english_text(p)]
    if not queries or not cands:
        return None
    qv = encode_q([q for _, q in queries])
    pv = encode_p([t for _, t in cands])
    ids = [pid for pid, _ in cands]
    scores = qv @ pv.T
    r1 = mrr = 0.0
    for row, (pid, _) in zip(scores, queries, strict=True):
        top = np.argsort(-row, kind="stable")[:10]
        ranked = [ids[i] for i in top]
        if ranked and ranked[0] == pid:
            r1 += 1
        if pid in ranked:
            mrr += 1.0 / (ranked.index(pid) + 1)
    n = len(queries)
    return SelfCheck(queries=n, candidates=len(cands), recall_at_1=round(r1 / n, 4), mrr_at_10=round(mrr / n, 4))


def _clean_stale(out: Path) -> None:
    """Remove temporary directories of trainings of ``out`` whose process is gone (killed runs)."""
    for tmp in out.parent.glob(f".{out.name}.train-*"):
        try:
            pid = int(tmp.name.split(".train-", 1)[1].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError, IndexError):
            continue


def _eval_pairs(mined: MinedPairs) -> list[Pair]:
    """One pair per held-out paper (two of one paper would be false negatives of each other)."""
    seen: set[str] = set()
    out: list[Pair] = []
    for kind in ("passage_title", "note_abstract", "passage_passage", "title_title"):
        for p in mined.heldout:
            if p.kind == kind and p.paper not in seen:
                seen.add(p.paper)
                out.append(p)
    return out


def train_encoder(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    options: TrainOptions | None = None,
    exclude_eval: Sequence[tuple[str | Path, bool]] = (),
    force: bool = False,
    progress: bool = True,
    papers: Sequence[Paper] | None = None,
    **settings: Any,
) -> TrainReport:
    """Train an embedding model on the digests under ``paths`` and save it to ``out`` (a sentence-transformers dir).

    ``settings`` are `TrainOptions` fields (``static=True`` or ``base="intfloat/multilingual-e5-small"``,
    ``seed``, ``steps``, ``batch_size``...), over ``options``. ``exclude_eval``: (questions JSONL,
    held-out third only) pairs whose papers' text is left out of training.
    Raises UsageError when ``out`` exists (unless ``force``) or the 'train' extra is missing,
    ModelUnavailableError when the base model cannot be loaded.

    Example:
        >>> report = train_encoder(["corpus"], "/tmp/models/digests", static=True)  # doctest: +SKIP
        >>> report.selfcheck_after.mrr_at_10  # doctest: +SKIP
    """
    from digest_rag.version import __version__

    try:
        opts = (options or TrainOptions()).model_validate({**(options or TrainOptions()).model_dump(), **settings})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"train option {'.'.join(map(str, first['loc']))}: {first['msg']}") from exc
    if opts.base is None and not opts.static:
        raise UsageError("choose a starting point: --static, or --base MODEL_OR_PATH")
    if opts.base is not None and opts.static:
        opts = opts.model_copy(update={"static": False})
    out = Path(out).expanduser().resolve()
    if out.exists() and any(out.iterdir()) and not force:
        raise UsageError(f"{out} exists and is not empty; pass --force to replace it")
    _require_train_extra()
    if papers is None:
        from digest_rag.parsing import parse_paths

        papers = parse_paths(paths).papers
    if not papers:
        raise UsageError("no papers found to train on")
    exclude = excluded_papers(papers, [(Path(f), h) for f, h in exclude_eval]) if exclude_eval else set()
    held_ids = set(mine_pairs(papers, heldout_share=opts.heldout_share, exclude=exclude).heldout_papers)
    # One sentence of some training papers stays out of training: what a build's fusion calibration asks.
    papers, sentences = hold_out_sentences(papers, exclude | held_ids, opts.calibration_sentences)
    mined = mine_pairs(papers, heldout_share=opts.heldout_share, exclude=exclude)
    if not any(p.paper for p in mined.train):
        raise UsageError("no paper has both a Korean and an English side: nothing to align")
    started = time.perf_counter()

    import torch

    from digest_rag.threads import configure_threads

    configure_threads()
    torch.manual_seed(opts.seed)
    random.seed(opts.seed)
    np.random.seed(opts.seed)
    model, base_name = _starting_model(opts, mined, papers)
    is_static = opts.base is None
    qp, pp = ("", "") if is_static else (QUERY_PREFIX, PASSAGE_PREFIX)

    def encode(prefix: str) -> Callable[[list[str]], np.ndarray]:
        return lambda texts: np.asarray(model.encode([prefix + t for t in texts], batch_size=256,
                                                     normalize_embeddings=True, convert_to_numpy=True))

    by_id = {p.id: p for p in papers if p.id not in exclude}
    held_papers = [by_id[i] for i in mined.heldout_papers]
    candidates = [by_id[i] for i in mined.train_papers + mined.heldout_papers]
    check_before = self_check(encode(qp), encode(pp), held_papers, candidates)

    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.train-{os.getpid()}-", dir=out.parent))
    restore = _exit_on_sigterm()
    try:
        loss_before, loss_after = _fit(model, mined, opts, tmp / "work", (qp, pp), progress)
        check_after = self_check(encode(qp), encode(pp), held_papers, candidates)
        report = TrainReport(
            out=str(out), base=base_name, seed=opts.seed, library_version=__version__, papers=len(papers),
            train_papers=len(mined.train_papers), heldout_papers=len(mined.heldout_papers),
            excluded_papers=mined.excluded_papers, pair_counts=mined.counts, heldout_pair_counts=mined.heldout_counts,
            options=opts, steps=opts.steps, seconds=round(time.perf_counter() - started, 1),
            heldout_loss_before=loss_before, heldout_loss_after=loss_after,
            selfcheck_before=check_before, selfcheck_after=check_after,
            heldout_paper_ids=mined.heldout_papers, heldout_sentences=sentences,
        )
        model_dir = tmp / "model"
        with _bars(progress):  # "Writing model shards"
            model.save(str(model_dir))
        from digest_rag.dense.training.card import write_card

        write_card(model_dir, report)
        (model_dir / REPORT_FILE).write_text(report.model_dump_json(indent=1), encoding="utf-8")
        for f in model_dir.rglob("*"):  # safetensors are saved 0600; a model is shared like any other
            f.chmod(0o755 if f.is_dir() else 0o644)
        _replace(model_dir, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        restore()
    return report


def _exit_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM (a `kill`) unwind like Ctrl-C, so the temporary directory goes; returns the undo."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _replace(new: Path, out: Path) -> None:
    """Move ``new`` to ``out``: a rename, so ``out`` is never half-written; an old ``out`` goes only after."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)


def _starting_model(opts: TrainOptions, mined: MinedPairs, papers: Sequence[Paper]) -> tuple[Any, str]:
    if opts.base is None:
        from digest_rag.dense.training.static import static_model

        train_ids = set(mined.train_papers)
        texts = [t for p in mined.train for t in (p.anchor, p.positive)]
        docs = [f"{p.anchor}\n{p.positive}" for p in mined.train]
        docs += [f"{korean_text(p)}\n{english_text(p)}" for p in papers if p.id in train_ids]
        model = static_model(texts, docs, dim=opts.dim, vocab_size=opts.vocab_size, seed=opts.seed, svd=opts.svd)
        return model, f"StaticEmbedding(dim={opts.dim}, WordPiece {opts.vocab_size} on the corpus, "\
                      f"{'SVD' if opts.svd else 'random'} start)"
    from digest_rag.dense.encoder import Encoder, _is_static

    enc = Encoder.load(opts.base, device="cpu", backend="torch")  # resolution, cache, one-line errors
    st = enc.model
    if type(st).__name__ != "SentenceTransformer":
        from sentence_transformers import SentenceTransformer

        from digest_rag.dense.quiet import no_progress_bars

        with no_progress_bars():  # a local read: no "Loading weights" bar
            st = SentenceTransformer(enc.name, device="cpu", trust_remote_code=False, local_files_only=True)
    if _is_static(st):
        raise UsageError(f"{opts.base} is a static model: fine-tune it with --static training instead")
    return st, f"{enc.name} (revision {enc.revision})"


def _fit(model: Any, mined: MinedPairs, opts: TrainOptions, work: Path, prefixes: tuple[str, str],
         progress: bool) -> tuple[float | None, float | None]:
    """Train ``model`` in place; returns the held-out loss before and after."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    train = mined.train
    plan = PaperBatches(train, opts.batch_size, opts.term_share, opts.seed)
    data = Dataset.from_dict({"anchor": [p.anchor for p in train], "positive": [p.positive for p in train]})
    held = _eval_pairs(mined)
    eval_data = Dataset.from_dict({"anchor": [p.anchor for p in held], "positive": [p.positive for p in held]}) \
        if len(held) >= 2 else None
    loss = _symmetric_loss(model, cached=opts.base is not None, mini_batch_size=opts.mini_batch_size)
    lr = opts.learning_rate or (STATIC_LR if opts.base is None else 2e-5)
    qp, pp = prefixes
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work), max_steps=opts.steps, per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=max(2, min(len(held), 1024)), learning_rate=lr, warmup_steps=max(1, opts.steps // 10),
        lr_scheduler_type="linear", seed=opts.seed, data_seed=opts.seed, batch_sampler=_sampler_factory(plan, len(train)),
        save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none",
        disable_tqdm=not progress, dataloader_num_workers=0, use_cpu=True,
        prompts={"anchor": qp, "positive": pp} if qp or pp else None,
    )
    _skip_widget_examples(model)
    with _bars(progress):
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, eval_dataset=eval_data,
                                             loss=loss)
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # it prints metric dicts on stdout, which --json owns
        before = _eval_loss(trainer, eval_data)
        trainer.train()
        after = _eval_loss(trainer, eval_data)
    return before, after


def _bars(progress: bool) -> AbstractContextManager[None]:
    """Hugging Face's progress bars as asked: left alone with ``progress``, else off (datasets' and transformers')."""
    from digest_rag.dense.quiet import no_progress_bars

    return nullcontext() if progress else no_progress_bars()


def _skip_widget_examples(model: Any) -> None:
    """sentence-transformers' trainer samples "widget examples" for the README it would write, behind a
    "Computing widget examples" bar on stderr that no flag turns off; our card (card.py) replaces that README,
    so the sampling is skipped."""
    card = getattr(model, "model_card_data", None)
    if card is not None and hasattr(card, "set_widget_examples"):
        card.set_widget_examples = lambda dataset: None


def _symmetric_loss(model: Any, *, cached: bool, mini_batch_size: int) -> Any:
    """Multiple-negatives ranking loss in both directions (note -> English and English -> note); cached for big bases."""
    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import losses  # type: ignore[no-redef]
    import inspect

    cls = losses.CachedMultipleNegativesRankingLoss if cached else losses.MultipleNegativesRankingLoss
    extra = {"mini_batch_size": mini_batch_size} if cached else {}
    if "directions" in inspect.signature(cls.__init__).parameters:
        return cls(model, directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction", **extra)
    old = losses.CachedMultipleNegativesSymmetricRankingLoss if cached else losses.MultipleNegativesSymmetricRankingLoss
    return old(model, **extra)


def _eval_loss(trainer: Any, eval_data: Any) -> float | None:
    if eval_data is None:
        return None
    value = trainer.evaluate().get("eval_loss")
    return round(float(value), 5) if value is not None and math.isfinite(value) else None


def report_json(report: TrainReport) -> str:
    """The report as `digest-rag train --json` prints it."""
    return json.dumps(report.model_dump(mode="json"), ensure_ascii=False, indent=1)
