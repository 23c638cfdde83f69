"""Retrieval evaluation: query files, metrics, a naive BM25 baseline, a report table.

Relevance is binary and judged per paper. Metrics are computed on the ranked
list of *paper ids* a search function returns (duplicates removed, first
occurrence kept), so chunk-level retrievers must aggregate to papers first.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import bm25s
import numpy as np
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from digest_rag.errors import DigestRagError, ParseError, UsageError
from digest_rag.models import Paper

__all__ = [
    "OFF_TOPIC",
    "EvalQuery",
    "SearchOutcome",
    "QueryResult",
    "KindRow",
    "EvalRow",
    "EvalReport",
    "load_queries",
    "resolve_relevant",
    "recall_at",
    "mrr_at",
    "ndcg_at",
    "first_relevant_rank",
    "evaluate",
    "naive_baseline",
    "format_table",
    "format_kind_table",
    "evaluate_index",
    "stable_bucket",
    "is_heldout",
    "PairedInterval",
    "paired_intervals",
    "format_intervals",
    "select_split",
]

#: The kind of a question that no paper of the corpus answers; its ``relevant`` list is empty.
OFF_TOPIC = "off-topic"


class SearchOutcome(BaseModel):
    """What a search function may return instead of a bare id list: the ranked ids and the confidence signal.

    ``strong_match`` is the search's own verdict on its top hit (False: "no strong match"); None when the
    search has no such signal. An empty ``ids`` list always counts as "no strong match".
    """

    ids: list[str]
    strong_match: bool | None = None


SearchFn = Callable[[str, int], "Sequence[str] | SearchOutcome"]


class EvalQuery(BaseModel):
    """One evaluation question, the papers (ids or exact English titles) that answer it, and its kind.

    ``kind`` says how the question is asked ("known-item", "paraphrase", "descriptive", ...; free text,
    None when unlabelled). An ``off-topic`` question has no answer in the corpus: its ``relevant`` is empty,
    and it is scored only by how often the search flags "no strong match". Every other question names at
    least one relevant paper.
    """

    query: str = Field(min_length=1)
    relevant: list[str] = Field(default_factory=list)
    kind: str | None = Field(default=None, min_length=1)

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query is blank")
        return v

    @model_validator(mode="after")
    def _relevant_matches_kind(self) -> EvalQuery:
        if self.kind == OFF_TOPIC and self.relevant:
            raise ValueError("an off-topic question has no relevant papers")
        if self.kind != OFF_TOPIC and not self.relevant:
            raise ValueError("relevant must name at least one paper (or kind must be off-topic)")
        return self

    @property
    def off_topic(self) -> bool:
        """True for a question with no answer in the corpus."""
        return self.kind == OFF_TOPIC


class QueryResult(BaseModel):
    """Per-query outcome, kept for failure analysis."""

    query: str
    relevant: list[str]
    ranked: list[str] = Field(description="top-10 paper ids returned")
    first_rank: int | None = Field(description="1-based rank of the first relevant paper in the top 10, None if absent")
    recall_at_10: float
    kind: str | None = None
    flagged: bool | None = Field(
        default=None, description="the search said 'no strong match' (or found nothing); None: it gave no signal"
    )


class KindRow(BaseModel):
    """Metrics of one question kind within an `EvalRow`.

    R@1 and MRR@10 are None for off-topic questions (there is nothing to find); ``flag_rate`` is the share of
    the kind's questions flagged "no strong match", None when the search gave no confidence signal at all.
    """

    kind: str
    n_queries: int
    recall_at_1: float | None
    mrr_at_10: float | None
    flag_rate: float | None = None


class EvalRow(BaseModel):
    """Aggregate metrics of one retrieval mode over a query set.

    The recall/MRR/nDCG fields and ``n_queries`` cover the questions that have an answer; off-topic
    questions appear only in ``by_kind`` (and ``details``).
    """

    mode: str
    n_queries: int
    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    mrr_at_10: float
    ndcg_at_10: float
    details: list[QueryResult] = Field(default_factory=list)
    by_kind: list[KindRow] = Field(default_factory=list, description="per question kind, when the file labels kinds")

    def failures(self) -> list[QueryResult]:
        """Answerable queries whose first relevant paper is not ranked first."""
        return [d for d in self.details if d.relevant and d.first_rank != 1]


class PairedInterval(BaseModel):
    """A mode's difference from a baseline mode on one metric, with its paired bootstrap 95% interval."""

    mode: str
    baseline: str
    metric: str
    difference: float
    low: float
    high: float


class EvalReport(BaseModel):
    """Rows for every evaluated mode, in the order they were run."""

    query_file: str | None = None
    index: str | None = None
    fusion: str | None = Field(default=None, description="the fusion weights the hybrid row used")
    rows: list[EvalRow] = Field(default_factory=list)
    intervals: list[PairedInterval] = Field(default_factory=list)

    def table(self) -> str:
        """The rows as a fixed-width text table, then the per-kind table when the questions have kinds."""
        kinds = format_kind_table(self.rows)
        return format_table(self.rows) + ("\n\n" + kinds if kinds else "")


# --------------------------------------------------------------------- queries


def load_queries(path: str | Path) -> list[EvalQuery]:
    """Read a JSON Lines query file; blank lines are skipped, bad lines raise ParseError with the line number."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParseError(f"{p}: cannot read query file ({exc})") from exc
    queries: list[EvalQuery] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            queries.append(EvalQuery.model_validate(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise ParseError(f"{p}:{lineno}: not valid JSON ({exc.msg})") from exc
        except ValueError as exc:  # valid JSON that Python refuses, e.g. an integer of 5,000 digits
            raise ParseError(f"{p}:{lineno}: not a query record ({exc})") from exc
        except RecursionError as exc:
            raise ParseError(f"{p}:{lineno}: not a query record (JSON nested too deeply)") from exc
        except ValidationError as exc:
            errs = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in exc.errors())
            raise ParseError(f"{p}:{lineno}: bad query record ({errs})") from exc
    return queries


def resolve_relevant(q: EvalQuery, papers: Sequence[Paper]) -> set[str]:
    """Paper ids for `q.relevant`: each entry is an id or an English title (case-insensitive, exact).

    Raises UsageError naming the first entry that matches no paper.
    """
    by_id = {p.id: p.id for p in papers}
    by_title: dict[str, str] = {}
    for p in papers:
        by_title.setdefault(" ".join(p.title.split()).casefold(), p.id)
    out: set[str] = set()
    for rel in q.relevant:
        key = rel.strip()
        if key in by_id:
            out.add(by_id[key])
            continue
        pid = by_title.get(" ".join(key.split()).casefold())
        if pid is None:
            raise UsageError(f"relevant paper {rel!r} of query {q.query!r} matches no paper id or title")
        out.add(pid)
    return out


def stable_bucket(key: str, buckets: int, salt: str) -> int:
    """A bucket in ``[0, buckets)`` fixed by SHA-256 of ``salt:key``.

    Unlike ``hash()`` it is the same on every machine, Python version and run,
    so splits and corpus variants decided with it never drift.
    """
    if buckets < 1:
        raise UsageError(f"buckets must be >= 1, got {buckets}")
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def is_heldout(q: EvalQuery) -> bool:
    """True for the fixed held-out third of a development set.

    Keyed on the smallest relevant paper id, so questions about the same
    paper (or sharing it) land on the same side of the split. An off-topic
    question, which has no paper, is keyed on its own text.
    """
    key = min(r.strip() for r in q.relevant) if q.relevant else q.query
    return stable_bucket(key, 3, "heldout") == 0


# --------------------------------------------------------------------- metrics


def _dedupe(ranked: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for r in ranked:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def recall_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """|relevant ∩ top k| / |relevant| (0.0 when nothing is relevant)."""
    if not relevant:
        return 0.0
    return len(set(_dedupe(ranked)[:k]) & relevant) / len(relevant)


def first_relevant_rank(ranked: Sequence[str], relevant: set[str], k: int | None = None) -> int | None:
    """1-based rank of the first relevant item within the top k (all when k is None), else None."""
    items = _dedupe(ranked)
    if k is not None:
        items = items[:k]
    for i, r in enumerate(items, start=1):
        if r in relevant:
            return i
    return None


def mrr_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Reciprocal rank of the first relevant item in the top k, 0.0 when none."""
    rank = first_relevant_rank(ranked, relevant, k)
    return 1.0 / rank if rank else 0.0


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Binary-relevance nDCG@k with the log2(rank + 1) discount."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 1) for i, r in enumerate(_dedupe(ranked)[:k], start=1) if r in relevant)
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(relevant), k) + 1))
    return dcg / idcg


def _outcome(result: Sequence[str] | SearchOutcome, k: int) -> SearchOutcome:
    if isinstance(result, SearchOutcome):
        return SearchOutcome(ids=_dedupe(result.ids)[:k], strong_match=result.strong_match)
    return SearchOutcome(ids=_dedupe(result)[:k], strong_match=getattr(result, "strong_match", None))


def _kind_rows(details: Sequence[QueryResult], signal: bool) -> list[KindRow]:
    by: dict[str, list[QueryResult]] = {}
    for d in details:
        if d.kind is not None:
            by.setdefault(d.kind, []).append(d)
    rows = []
    for kind in sorted(by, key=lambda k: (k == OFF_TOPIC, k)):
        ds = by[kind]
        answerable = [d for d in ds if d.relevant]
        rows.append(
            KindRow(
                kind=kind,
                n_queries=len(ds),
                recall_at_1=sum(d.first_rank == 1 for d in answerable) / len(answerable) if answerable else None,
                mrr_at_10=sum(1.0 / d.first_rank for d in answerable if d.first_rank) / len(answerable)
                if answerable else None,
                flag_rate=sum(bool(d.flagged) for d in ds) / len(ds) if signal else None,
            )
        )
    return rows


def evaluate(queries: Sequence[EvalQuery], search: SearchFn, papers: Sequence[Paper], name: str) -> EvalRow:
    """Run `search(query, 10)` for every query and average the metrics into one row named `name`.

    `search` returns ranked paper ids, or a `SearchOutcome` (or any id sequence with a ``strong_match``
    attribute, such as `SearchResults`) that also carries the "no strong match" signal. Off-topic questions
    are searched too and counted only in the per-kind flag rate.
    """
    if not queries:
        raise UsageError("no evaluation queries")
    details: list[QueryResult] = []
    sums = dict.fromkeys(("r1", "r5", "r10", "mrr", "ndcg"), 0.0)
    signal = False
    for q in queries:
        rel = resolve_relevant(q, papers)
        out = _outcome(search(q.query, 10), 10)
        ranked = out.ids
        signal = signal or out.strong_match is not None
        flagged = (not ranked) or out.strong_match is False
        if rel:
            sums["r1"] += recall_at(ranked, rel, 1)
            sums["r5"] += recall_at(ranked, rel, 5)
            sums["r10"] += recall_at(ranked, rel, 10)
            sums["mrr"] += mrr_at(ranked, rel, 10)
            sums["ndcg"] += ndcg_at(ranked, rel, 10)
        details.append(
            QueryResult(
                query=q.query,
                relevant=sorted(rel),
                ranked=ranked,
                first_rank=first_relevant_rank(ranked, rel, 10),
                recall_at_10=recall_at(ranked, rel, 10),
                kind=q.kind,
                flagged=flagged,
            )
        )
    if not signal:  # no confidence signal: only an empty result list says anything, and not enough
        for d in details:
            d.flagged = None
    n = sum(1 for q in queries if q.relevant)
    avg = {key: v / n if n else 0.0 for key, v in sums.items()}
    return EvalRow(
        mode=name,
        n_queries=n,
        recall_at_1=avg["r1"],
        recall_at_5=avg["r5"],
        recall_at_10=avg["r10"],
        mrr_at_10=avg["mrr"],
        ndcg_at_10=avg["ndcg"],
        details=details,
        by_kind=_kind_rows(details, signal),
    )


# --------------------------------------------------------------------- baseline


def _paper_text(p: Paper) -> str:
    parts = [p.title, p.title_ko or ""]
    parts.extend(s.text for s in p.sections)
    return "\n".join(x for x in parts if x)


def naive_baseline(papers: Sequence[Paper]) -> SearchFn:
    """BM25 over whole papers (title + all sections), whitespace split + lowercase, no morphology.

    This is the "what would a naive implementation do" reference the real
    lexical index must beat: Korean words keep their particles ("컨텍스트를"),
    so they rarely match a query's differently inflected form.
    """
    ids = [p.id for p in papers]
    corpus = [_paper_text(p).lower().split() for p in papers]
    retriever: bm25s.BM25 | None = None
    if ids:
        retriever = bm25s.BM25()
        retriever.index(corpus, show_progress=False)

    def search(query: str, k: int) -> list[str]:
        if retriever is None or k <= 0:
            return []
        vocab = retriever.vocab_dict
        n_terms = len(retriever.scores["indptr"]) - 1
        tids = sorted({vocab[t] for t in query.lower().split() if t in vocab and vocab[t] < n_terms})
        if not tids:
            return []
        scores = np.asarray(retriever.get_scores_from_ids(tids))
        cand = np.flatnonzero(scores > 0)
        order = cand[np.lexsort((cand, -scores[cand]))][:k]
        return [ids[i] for i in order]

    return search


# --------------------------------------------------------------------- report


def _per_query(row: EvalRow, metric: str) -> np.ndarray:
    # The answerable questions, as the row's averages count them (off-topic ones have no relevant paper).
    answerable = [d for d in row.details if d.relevant]
    if metric == "R@1":
        return np.array([recall_at(d.ranked, set(d.relevant), 1) for d in answerable])
    return np.array([mrr_at(d.ranked, set(d.relevant), 10) for d in answerable])


def paired_intervals(rows: Sequence[EvalRow], baseline: str = "lexical", metrics: Sequence[str] = ("R@1", "MRR@10"),
                     resamples: int = 1000, seed: int = 0) -> list[PairedInterval]:
    """Each row's difference from the ``baseline`` row on ``metrics``, with the 2.5% and 97.5% quantiles of
    the mean difference over ``resamples`` bootstrap resamples of the queries (the same queries for both
    modes: paired). Rows without per-query details, or not over the same queries, are left out."""
    from digest_rag.search.calibration import paired_bootstrap

    base = next((r for r in rows if r.mode == baseline), None)
    if base is None:
        return []
    out: list[PairedInterval] = []
    for row in rows:
        if row is base or len(row.details) != len(base.details) or not row.details \
                or [d.query for d in row.details] != [d.query for d in base.details]:
            continue
        for metric in metrics:
            diff = _per_query(row, metric) - _per_query(base, metric)
            low, high = paired_bootstrap(diff, resamples=resamples, seed=seed)
            out.append(PairedInterval(mode=row.mode, baseline=baseline, metric=metric,
                                      difference=float(diff.mean()), low=low, high=high))
    return out


def format_intervals(intervals: Sequence[PairedInterval]) -> str:
    """Each mode's differences from its baseline, one line per mode: ``+0.050 [+0.010, +0.090]`` per metric."""
    if not intervals:
        return ""
    by_mode: dict[str, list[PairedInterval]] = {}
    for iv in intervals:
        by_mode.setdefault(iv.mode, []).append(iv)
    width = max(len(m) for m in by_mode)
    lines = [f"minus {intervals[0].baseline}, paired bootstrap 95% interval:"]
    for mode, ivs in by_mode.items():
        cells = "".join(f"  {iv.metric} {iv.difference:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}]" for iv in ivs)
        lines.append(f"  {mode:<{width}}{cells}")
    return "\n".join(lines)


def select_split(queries: Sequence[EvalQuery], split: str) -> list[EvalQuery]:
    """``all`` the queries, or the ``heldout`` third (`is_heldout`), or the ``tune`` rest."""
    if split == "all":
        return list(queries)
    if split not in ("heldout", "tune"):
        raise UsageError(f"unknown split {split!r}; choose all, tune or heldout")
    return [q for q in queries if is_heldout(q) == (split == "heldout")]


def format_table(rows: Sequence[EvalRow]) -> str:
    """A fixed-width table: one line per mode, metrics with three decimals."""
    headers = ("mode", "queries", "R@1", "R@5", "R@10", "MRR@10", "nDCG@10")
    width = max([len(headers[0])] + [len(r.mode) for r in rows])
    lines = [f"{headers[0]:<{width}}  {headers[1]:>7}" + "".join(f"  {h:>7}" for h in headers[2:])]
    lines.append("-" * len(lines[0]))
    for r in rows:
        vals = (r.recall_at_1, r.recall_at_5, r.recall_at_10, r.mrr_at_10, r.ndcg_at_10)
        lines.append(f"{r.mode:<{width}}  {r.n_queries:>7}" + "".join(f"  {v:>7.3f}" for v in vals))
    return "\n".join(lines)


def format_kind_table(rows: Sequence[EvalRow]) -> str:
    """Per mode and question kind: queries, R@1, MRR@10 and the "no strong match" flag rate ("-": not
    applicable or no signal). Empty when no question has a kind."""
    if not any(r.by_kind for r in rows):
        return ""
    headers = ("mode", "kind", "queries", "R@1", "MRR@10", "flagged")
    mw = max([len(headers[0])] + [len(r.mode) for r in rows])
    kw = max([len(headers[1])] + [len(k.kind) for r in rows for k in r.by_kind])

    def num(v: float | None) -> str:
        return f"{v:>7.3f}" if v is not None else f"{'-':>7}"

    lines = [f"{headers[0]:<{mw}}  {headers[1]:<{kw}}  {headers[2]:>7}" + "".join(f"  {h:>7}" for h in headers[3:])]
    lines.append("-" * len(lines[0]))
    for r in rows:
        for k in r.by_kind:
            lines.append(f"{r.mode:<{mw}}  {k.kind:<{kw}}  {k.n_queries:>7}  {num(k.recall_at_1)}  {num(k.mrr_at_10)}"
                         f"  {num(k.flag_rate)}")
    return "\n".join(lines)


# --------------------------------------------------------------------- index


def _index_outcome(hits: Sequence[object]) -> SearchOutcome:
    """`DigestIndex.search` results as ids plus their ``strong_match`` verdict (None when the index gives none)."""
    return SearchOutcome(ids=[h.paper.id for h in hits], strong_match=getattr(hits, "strong_match", None))  # type: ignore[attr-defined]


def evaluate_index(
    index: object,
    queries_path: str | Path,
    modes: Sequence[str] | None = None,
    *,
    baseline: bool = True,
    fusion_weights: Sequence[Mapping[str, float]] = (),
    split: str = "all",
    hybrid_weights: Mapping[str, float] | None = None,
) -> EvalReport:
    """Evaluate a loaded `DigestIndex` on a query file, per mode, beside the naive baseline.

    Modes default to all three; a mode the index cannot serve (dense on a
    lexical-only index, or with no model available) is reported as skipped
    in a warning rather than failing the whole report. Each of
    ``fusion_weights`` (retriever -> weight, see `fusion.parse_fusion_weights`)
    adds a hybrid row fused with those weights, named ``hybrid d=<dense>,l=<lexical>``. The ``hybrid`` row
    fuses with ``hybrid_weights`` when given, else with the weights the index calibrated at build time.
    ``split`` keeps all the queries, or the held-out or tuning part (`select_split`). ``intervals`` of the
    report: each row against lexical, with paired bootstrap 95% intervals (`paired_intervals`).
    """
    queries = select_split(load_queries(queries_path), split)
    if not queries:
        raise UsageError(f"{queries_path}: no queries in the {split} split")
    papers = list(index.papers.values())  # type: ignore[attr-defined]
    weights, rrf_k = index.fusion_settings(hybrid_weights)  # type: ignore[attr-defined]
    cal = index.manifest.fusion  # type: ignore[attr-defined]
    source = "given" if hybrid_weights is not None else ("calibrated at build" if cal is not None else "defaults")
    from digest_rag.search.fusion import fusion_label

    shape, english_weight = index.fusion_shape(hybrid_weights)  # type: ignore[attr-defined]
    report = EvalReport(query_file=str(queries_path), index=str(index.index_dir),  # type: ignore[attr-defined]
                        fusion=f"{fusion_label({'dense': 1.0, **weights}, rrf_k, shape, english_weight)} ({source})")
    for mode in modes or ("lexical", "dense", "hybrid"):

        def search(q: str, k: int, _mode: str = mode) -> SearchOutcome:
            w = hybrid_weights if _mode == "hybrid" else None
            return _index_outcome(index.search(q, k=k, mode=_mode, fusion_weights=w))  # type: ignore[attr-defined]

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                report.rows.append(evaluate(queries, search, papers, mode))
        except DigestRagError as exc:
            if modes:  # explicitly requested: the caller wants the error
                raise
            warnings.warn(f"mode {mode} not evaluated: {exc}", stacklevel=2)
    for weights in fusion_weights:
        name = f"hybrid d={weights.get('dense', 1.0):g},l={weights.get('lexical', 1.0):g}"

        def fused(q: str, k: int, _w: Mapping[str, float] = weights) -> SearchOutcome:
            return _index_outcome(index.search(q, k=k, mode="hybrid", fusion_weights=_w))  # type: ignore[attr-defined]

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report.rows.append(evaluate(queries, fused, papers, name))
    if baseline:
        report.rows.append(evaluate(queries, naive_baseline(papers), papers, "naive-bm25"))
    report.intervals = paired_intervals(report.rows)
    return report
