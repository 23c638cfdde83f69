"""Reproducible sample of target papers for the ml-papers development set (issue 12).

Run from the repository root with ../shared/corpora/ml-papers present:

    python eval/sample_devset.py > eval/ml_papers_sample.tsv

Papers are parsed together with the seeds exactly as an index build would
(`digest_rag.parse_paths(["corpus", ML_PAPERS])`). Only papers with enough
text to write a content question from (>= MIN_CHARS characters outside the
title, not counting the English link/author lines of the notes) are eligible. Crowded topics get fixed quotas so the set contains
look-alike papers; the rest is drawn across years. Everything is drawn with
one fixed seed, so the output is the same on every run.
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

from digest_rag import Paper, parse_paths

ML_PAPERS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpora" / "ml-papers" / "papers"
SEED = 20261123
MIN_CHARS = 180
TOTAL = 175
# Crowded topics, each with a quota: tags as written in the notes, or the title pattern.
TOPICS: dict[str, tuple[set[str], int]] = {
    "rl-post-training/alignment": ({"alignment", "rlhf", "reinforcement_learning", "instruct", "feedback", "reward_model"}, 18),
    "moe": ({"mixture_of_experts", "moe", "sparse_moe"}, 9),
    "diffusion": ({"ddpm"}, 16),
    "llm": ({"llm", "lm", "in_context_learning", "prompt", "reasoning", "scaling-law"}, 16),
    "gan": ({"gan", "stylegan", "gan_inversion"}, 10),
    "distillation": ({"distillation"}, 5),
    "contrastive/self-supervised": ({"contrastive_learning", "self_supervised"}, 8),
    "vit/attention": ({"vit", "vision_transformer", "efficient_attention", "local_attention"}, 8),
    "speech": ({"asr", "tts", "speech", "transducer", "ctc"}, 6),
}


TITLE_TOPICS = {
    "moe": re.compile(r"mixture[- ]of[- ]experts?|\bmoe\b|\bexperts?\b", re.I),
    "rl-post-training/alignment": re.compile(r"\brlhf\b|preference|reward|reinforcement", re.I),
    "diffusion": re.compile(r"diffusion", re.I),
}


def _title_topic(title: str) -> str | None:
    return next((t for t, rx in TITLE_TOPICS.items() if rx.search(title)), None)


def _content_chars(p: Paper) -> int:
    """Characters a content question can be written from: Korean/mixed text, English abstracts and summaries.

    English 'commentary' in the notes is mostly the arXiv link, title and
    author line, so it does not count.
    """
    return sum(len(s.text) for s in p.sections if s.language != "en" or s.kind in ("abstract", "summary"))


def main() -> None:
    papers = parse_paths([Path("corpus"), ML_PAPERS]).papers
    papers.sort(key=lambda p: p.id)
    eligible = [p for p in papers if _content_chars(p) >= MIN_CHARS]
    rng = random.Random(SEED)
    chosen: dict[str, tuple[str, object]] = {}
    seeds = [p for p in eligible if Path(p.source).parent.name == "corpus"]
    for p in rng.sample(seeds, 14):
        chosen[p.id] = ("seed", p)
    for topic, (tags, quota) in TOPICS.items():
        pool = [p for p in eligible if p.id not in chosen and (tags & set(p.tags) or _title_topic(p.title) == topic)]
        for p in rng.sample(pool, min(quota, len(pool))):
            chosen[p.id] = (topic, p)
    rest = [p for p in eligible if p.id not in chosen]
    for p in rng.sample(rest, TOTAL - len(chosen)):
        chosen[p.id] = ("other", p)
    order = list(chosen.values())
    rng.shuffle(order)
    out = sys.stdout
    out.write("paper_id\ttopic\tyear\ttitle\n")
    for topic, p in order:
        year = p.date.year if p.date else ""
        out.write(f"{p.id}\t{topic}\t{year}\t{p.title}\n")


if __name__ == "__main__":
    main()
