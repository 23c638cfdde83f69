"""Write N small synthetic bilingual papers as JSON Lines, for benchmarks at scale (e.g. 1M papers).

    python benchmarks/synth_papers.py --papers 1000000 --out /tmp/digest_rag_bench/synth-1m.jsonl

Each paper has an id, an English and a Korean title, a date, 2-3 tags, 2 authors, and one short section:
a two-sentence English abstract (even ids) or a one-sentence Korean summary (odd ids), built from fixed ML word lists with
a seeded random generator: the same N always gives the same file, so builds and queries are reproducible.
English titles are unique; abstracts and summaries come from a pool of ABSTRACT_POOL variants.
The word lists are small on purpose: a realistic BM25 vocabulary has a few thousand frequent terms, and every
query term matches many documents, which is the expensive case for a lexical search at scale.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

EN_TOPICS = [
    "scaling laws", "knowledge distillation", "jailbreak attacks", "long context", "retrieval augmentation",
    "mixture of experts", "instruction tuning", "reward modeling", "preference optimization", "speculative decoding",
    "quantization", "sparse attention", "state space models", "diffusion models", "vision transformers",
    "code generation", "chain of thought", "tool use", "agents", "multilingual pretraining", "tokenization",
    "contrastive learning", "self-supervised learning", "reinforcement learning", "model merging", "pruning",
    "low-rank adaptation", "data curation", "synthetic data", "evaluation benchmarks", "hallucination",
    "interpretability", "safety alignment", "red teaming", "embedding models", "dense retrieval", "reranking",
    "graph neural networks", "speech recognition", "text-to-image generation",
]
KO_TOPICS = [
    "스케일링 법칙", "지식 증류", "탈옥 공격", "긴 컨텍스트", "검색 증강", "전문가 혼합", "지시 튜닝", "보상 모델",
    "선호 최적화", "추측 디코딩", "양자화", "희소 어텐션", "상태 공간 모델", "확산 모델", "비전 트랜스포머",
    "코드 생성", "사고의 사슬", "도구 사용", "에이전트", "다국어 사전학습", "토큰화", "대조 학습", "자기지도 학습",
    "강화 학습", "모델 병합", "가지치기", "저랭크 적응", "데이터 큐레이션", "합성 데이터", "평가 벤치마크", "환각",
    "해석 가능성", "안전 정렬", "레드 팀", "임베딩 모델", "밀집 검색", "재순위화", "그래프 신경망", "음성 인식",
    "텍스트-이미지 생성",
]
EN_VERBS = ["improves", "revisits", "scales", "analyzes", "accelerates", "simplifies", "stabilizes", "rethinks",
            "benchmarks", "unifies", "compresses", "extends"]
EN_NOUNS = ["language models", "transformers", "retrievers", "vision encoders", "small models", "agents",
            "tokenizers", "optimizers", "datasets", "reward models", "embeddings", "decoders"]
EN_RESULTS = ["accuracy", "throughput", "memory use", "robustness", "sample efficiency", "latency", "recall",
              "calibration", "generalization", "training stability"]
KO_VERBS = ["개선한다", "분석한다", "가속한다", "단순화한다", "안정화한다", "확장한다", "압축한다", "재검토한다"]
KO_NOUNS = ["언어 모델", "트랜스포머", "검색기", "비전 인코더", "소형 모델", "에이전트", "토크나이저", "최적화 기법",
            "데이터셋", "보상 모델"]
KO_RESULTS = ["정확도", "처리량", "메모리 사용량", "견고성", "표본 효율", "지연 시간", "재현율", "일반화 성능"]
TAGS = ["LLM", "NLP", "CV", "RL", "Safety", "Efficiency", "Retrieval", "Agents", "Multimodal", "Theory",
        "Benchmark", "Korean", "Speech", "Optimization", "Data"]
SURNAMES = ["Kim", "Lee", "Park", "Choi", "Smith", "Wang", "Zhang", "Garcia", "Müller", "Tanaka", "Nguyen",
            "Brown", "Silva", "Jung", "Kang", "Chen", "Singh", "Cohen"]
INITIALS = "ABCDEFGHJKLMNPRSTWY"
#: Distinct abstract/summary variants (see `_variant`).
ABSTRACT_POOL = 20_000


def _variant(pool: int, i: int, salt: int) -> random.Random:
    """The generator of variant ``i % pool``: texts repeat across papers, as boilerplate phrasing does.

    Repetition keeps a 1M-paper build affordable (the index analyses each distinct text once) without
    changing what a search at that scale costs: posting lists are as long as with unique texts.
    """
    return random.Random(salt * 1_000_003 + i % pool)


def paper(i: int, rng: random.Random) -> dict[str, object]:
    """The i-th synthetic paper (JSON object in digest_rag's JSONL schema)."""
    v = _variant(ABSTRACT_POOL, rng.randrange(ABSTRACT_POOL), 1)
    t, t2 = v.randrange(len(EN_TOPICS)), v.randrange(len(EN_TOPICS))
    noun, verb, res, gain = v.randrange(len(EN_NOUNS)), v.choice(EN_VERBS), v.randrange(len(EN_RESULTS)), v.randint(2, 60)
    abstract = (
        f"We study {EN_TOPICS[t]} for {EN_NOUNS[noun]} and show that combining it with {EN_TOPICS[t2]} "
        f"{verb} {EN_RESULTS[res]} by {gain}% on {v.randint(3, 12)} benchmarks. "
        f"Our analysis of {v.randint(1, 70)}B-parameter models explains when {EN_TOPICS[t2]} helps."
    )
    summary = (
        f"이 논문은 {KO_TOPICS[t]}와 {KO_TOPICS[t2]}를 결합해 {KO_NOUNS[noun % len(KO_NOUNS)]}의 "
        f"{KO_RESULTS[res % len(KO_RESULTS)]}을 {gain}% {v.choice(KO_VERBS)}."
    )
    year = rng.randint(2015, 2025)
    return {
        "id": f"synth-{i:07d}",
        "title": f"{EN_TOPICS[t].title()} {verb} {EN_NOUNS[noun]} ({i})",
        "title_ko": f"{KO_TOPICS[t]}로 {KO_NOUNS[noun % len(KO_NOUNS)]}을 {KO_VERBS[res % len(KO_VERBS)]}",
        "date": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "tags": rng.sample(TAGS, rng.randint(2, 3)),
        "authors": [f"{rng.choice(INITIALS)}. {rng.choice(SURNAMES)}" for _ in range(2)],
        # One short section per paper, English or Korean: two chunks in the store (title + text), one BM25 document.
        **({"abstract_en": abstract} if i % 2 == 0 else {"summary_ko": summary}),
    }


def write(n: int, out: Path, seed: int = 0) -> Path:
    """Write ``n`` papers to ``out`` (atomically: a temporary file renamed at the end)."""
    rng = random.Random(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(paper(i, rng), ensure_ascii=False))
            f.write("\n")
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--papers", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    write(args.papers, args.out, args.seed)
    print(f"wrote {args.papers} papers to {args.out} ({args.out.stat().st_size / 2**20:.0f} MiB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
