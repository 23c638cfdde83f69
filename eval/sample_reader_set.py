"""Reproducible sample of target papers for the reader-style question set (colloquial / detail).

Run from the repository root with ../shared/corpora/ml-papers present:

    python eval/sample_reader_set.py > eval/ml_papers_reader_sample.tsv

Papers are parsed together with the seeds exactly as an index build would
(`digest_rag.parse_paths(["corpus", ML_PAPERS])`). Eligible papers have enough
text to write a specific (detail) question from (>= MIN_CHARS characters outside
the title and link/author lines, as in sample_devset.py) and are not named in the
`relevant` list of any existing eval/*.jsonl file, so the new set is not about
papers earlier tuning looked at. The draw is stratified by year (each year gets
its share of the eligible papers, largest remainder) and caps every crowded topic
of sample_devset.TOPICS at TOPIC_CAP papers. One fixed seed, different from
sample_devset's, so the output is the same on every run.

Kinds are assigned in the pattern colloquial, detail, detail, colloquial (repeated)
so that both the odd rows (tune) and the even rows (held-out) get both kinds about
equally: 55 colloquial and 55 detail in all.
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

from digest_rag import Paper, parse_paths

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_devset import ML_PAPERS, TOPICS, _content_chars, _title_topic  # noqa: E402

SEED = 20261207
MIN_CHARS = 250
TOTAL = 110
TOPIC_CAP = 12
KIND_PATTERN = ("colloquial", "detail", "detail", "colloquial")
EVAL_DIR = Path(__file__).resolve().parent


def _topic(p: Paper) -> str:
    for topic, (tags, _quota) in TOPICS.items():
        if tags & set(p.tags) or _title_topic(p.title) == topic:
            return topic
    return "other"


def _already_judged() -> set[str]:
    """Paper ids and titles named in any existing eval/*.jsonl `relevant` list."""
    named: set[str] = set()
    for path in sorted(EVAL_DIR.glob("*.jsonl")):
        if path.name.startswith("ml_papers_reader_"):
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                named.update(json.loads(line)["relevant"])
    return named


def _year_quotas(by_year: dict[int, list[Paper]], total: int) -> dict[int, int]:
    n = sum(len(v) for v in by_year.values())
    exact = {y: total * len(v) / n for y, v in by_year.items()}
    quotas = {y: int(e) for y, e in exact.items()}
    for y in sorted(exact, key=lambda y: (-(exact[y] - quotas[y]), y))[: total - sum(quotas.values())]:
        quotas[y] += 1
    return quotas


def main() -> None:
    papers = parse_paths([Path("corpus"), ML_PAPERS]).papers
    papers.sort(key=lambda p: p.id)
    named = _already_judged()
    eligible = [
        p for p in papers if _content_chars(p) >= MIN_CHARS and p.id not in named and p.title not in named
    ]
    by_year: dict[int, list[Paper]] = defaultdict(list)
    for p in eligible:
        by_year[p.date.year if p.date else 0].append(p)
    rng = random.Random(SEED)
    chosen: list[Paper] = []
    per_topic: Counter[str] = Counter()
    for year, quota in sorted(_year_quotas(by_year, TOTAL).items()):
        pool = list(by_year[year])
        rng.shuffle(pool)
        taken = 0
        for p in pool:
            if taken == quota:
                break
            topic = _topic(p)
            if topic != "other" and per_topic[topic] >= TOPIC_CAP:
                continue
            per_topic[topic] += 1
            chosen.append(p)
            taken += 1
    rng.shuffle(chosen)
    out = sys.stdout
    out.write("row\tpaper_id\tkind\ttopic\tyear\ttitle\n")
    for row, p in enumerate(chosen, start=1):
        kind = KIND_PATTERN[(row - 1) % len(KIND_PATTERN)]
        year = p.date.year if p.date else ""
        out.write(f"{row}\t{p.id}\t{kind}\t{_topic(p)}\t{year}\t{p.title}\n")


if __name__ == "__main__":
    main()
