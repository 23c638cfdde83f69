"""digest_rag against txtai (the peer users would pick instead), same passages, same model, one run.

Query rows (issue 14), each system in its own processes, interleaved round by round:

* in-process hybrid p50: `DigestIndex.search(q, k=10, mode="hybrid")` (E5 + BM25 fused, papers aggregated,
  snippets cut and highlighted) against txtai `Embeddings(hybrid=True).search(q, 10)` (dense + BM25);
* in-process lexical p50 (issue 25): `mode="lexical"` (Kiwi analysis, glossary expansion, papers aggregated,
  snippets) against txtai's keyword-only BM25 index AND a hand-built bm25s + Kiwi passage search
  (`_BM25S_KIWI`: Kiwi morphemes of content words, Latin words lowercased, bm25s over the same passages), on
  >= 30 dev questions (default: the first 30 answerable questions of eval/ml_papers_kinds_tune.jsonl: all
  Korean, about half naming a model), with each system's R@1 and MRR@10 on them. The peers search the
  passages of the digest_rag lexical index (every chunk, title chunks too); a passage counts as its paper.
  The timed passes repeat the questions, and a loaded index keeps what it worked out for a question (its
  analysis, Kiwi's reading, its snippets' morphemes and chunks), so one more row times each question's *first*
  search in digest_rag's process, after warming up on 10 other questions of the file: what a new question costs;
* one CLI hybrid search process: `python -m digest_rag.frontends.cli search Q --index DIR -k 5` against a minimal txtai
  script (`Embeddings().load(DIR); print(search(Q, 5))`), wall time and peak RSS (/usr/bin/time).

Build rows (issue 15, `--build`), each a fresh process, the two systems interleaved (order alternates by round):

* cold build: `python -m digest_rag build CORPUS --index NEW --model M` (parse, chunk, encode, FAISS, BM25,
  write) against a txtai script that reads the same passages (cut by digest_rag's chunker, title line included,
  exported beforehand by `_PASSAGES`) and runs `Embeddings(hybrid=True, backend="faiss").index(rows)` + `save`;
* 1%-changed rebuild: after appending a sentence to the files of 1% of the papers, `digest-rag build` again
  against a txtai script that loads its index, `upsert`s every passage of the changed papers (it cannot tell
  which passages changed), deletes the vanished ones, and saves.

Passages: the text chunks of the current code's torch index of seeds + ml-papers that benchmarks/bench_cli.py
prepares (cut by digest_rag's chunker); model: the e5-shaped random model (`_common.e5_shaped_model`), with
E5's "query: " / "passage: " prefixes on both sides. txtai's indexes are built once under
/tmp/digest_rag_bench/peers and reused. txtai is in the `bench` extra only (`pip install 'digest-rag[bench]'`).

Usage: python benchmarks/bench_peers.py [--rounds 5] [--repeat 5] [--lexical-only] [--questions FILE] [--n 30]
           (run python benchmarks/bench_cli.py --prepare-only first, or pass --lexical-index: seeds + ml-papers)
       python benchmarks/bench_peers.py --build [--rounds 1] [--subset 2019 arXiv]   (build rows only)
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    IN_PROCESS_SEARCH,
    ML_PAPERS,
    ROOT,
    SEEDS,
    WORK,
    code_env,
    e5_shaped_model,
    machine,
    timed_process,
)
from bench_query import QUERIES  # noqa: E402

QUERY = QUERIES[0]
PEERS = WORK / "peers"

_BUILD_TXTAI = """
import json, sys
from digest_rag import DigestIndex
from txtai import Embeddings
index, model, out_hybrid, out_bm25 = sys.argv[1:5]
idx = DigestIndex.load(index)
rows = [(cid, c.text, None) for cid, c in idx.store.chunks().items() if c.section_kind != "title"]
if out_hybrid != "-":
    emb = Embeddings(path=model, hybrid=True, backend="faiss", instructions={"query": "query: ", "data": "passage: "})
    emb.index(rows)
    emb.save(out_hybrid)
bm25 = Embeddings(keyword=True)
bm25.index(rows)
bm25.save(out_bm25)
print(len(rows))
"""


_TXTAI = """
import json, sys, time
from txtai import Embeddings
path, repeat, queries = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
emb = Embeddings()
emb.load(path)
top = {q: [r[0] if isinstance(r, (tuple, list)) else r["id"] for r in emb.search(q, 10)] for q in queries}
ms = []
for _ in range(repeat):
    for q in queries:
        t = time.perf_counter()
        emb.search(q, 10)
        ms.append((time.perf_counter() - t) * 1000)
print(json.dumps({"ms": ms, "top": top}))
"""

#: The lexical peers' passages: every chunk of the digest_rag lexical index (title chunks too, as its own BM25
#: sees them) and the chunk -> paper table that turns a peer's passages into papers. argv: index, out dir.
_LEXICAL_PASSAGES = """
import json, sys
from pathlib import Path
from digest_rag import DigestIndex
index, out = sys.argv[1], Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
chunks = DigestIndex.load(index).store.chunks()
with open(out / "passages.jsonl", "w", encoding="utf-8") as fh:
    for cid, c in chunks.items():
        fh.write(json.dumps({"id": cid, "paper": c.paper_id, "text": c.text}, ensure_ascii=False) + "\\n")
(out / "chunk_papers.json").write_text(json.dumps({str(cid): c.paper_id for cid, c in chunks.items()}))
print(len(chunks))
"""

_BUILD_TXTAI_KEYWORD = """
import json, sys
from txtai import Embeddings
passages, out = sys.argv[1:3]
emb = Embeddings(keyword=True)
emb.index([(r["id"], r["text"], None) for r in map(json.loads, open(passages, encoding="utf-8"))])
emb.save(out)
"""

#: The hand-built peer's analysis: Kiwi as pip installs it, keeping nouns, numerals, roots, verb/adjective stems,
#: foreign (Latin), Hanja and number tokens, lowercased.
_KIWI_TOKENS = """
from kiwipiepy import Kiwi
_KIWI = Kiwi()
_KEEP = {"NNG", "NNP", "NR", "SL", "SH", "SN", "XR", "VV", "VA"}
def tokens(text):
    return [t.form.lower() for t in _KIWI.tokenize(text) if t.tag in _KEEP]
"""

_BUILD_BM25S_KIWI = _KIWI_TOKENS + """
import json, sys
import bm25s
passages, out = sys.argv[1:3]
rows = [json.loads(line) for line in open(passages, encoding="utf-8")]
retriever = bm25s.BM25()
retriever.index([tokens(r["text"]) for r in rows], show_progress=False)
retriever.save(out)
json.dump([r["id"] for r in rows], open(out + "/ids.json", "w"))
"""

#: bm25s + Kiwi passage search: analyse the question, score every passage (bm25s' sparse matrix), top 10.
_BM25S_KIWI = _KIWI_TOKENS + """
import json, sys, time
import bm25s
import numpy as np
path, repeat, queries = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
retriever = bm25s.BM25.load(path)
ids = json.load(open(path + "/ids.json"))
vocab = retriever.vocab_dict
def search(q, k):
    tids = sorted({vocab[t] for t in tokens(q) if t in vocab})
    if not tids:
        return []
    scores = np.asarray(retriever.get_scores_from_ids(tids))
    top = np.argpartition(-scores, k)[:k]
    return [ids[i] for i in top[np.argsort(-scores[top], kind="stable")] if scores[i] > 0]
top = {q: search(q, 10) for q in queries}
ms = []
for _ in range(repeat):
    for q in queries:
        t = time.perf_counter()
        search(q, 10)
        ms.append((time.perf_counter() - t) * 1000)
print(json.dumps({"ms": ms, "top": top}))
"""

#: digest_rag's in-process lexical search, with each question's top paper ids. Warmed up on other questions
#: (argv[4]: Kiwi, the name and chunk tables load), then "first": each question's first search, before the
#: index has its analysis (`DigestIndex.analyse` keeps the last questions' analyses) and before Kiwi read it.
_DIGEST_LEXICAL = """
import json, sys, time
from digest_rag import DigestIndex
index, repeat, queries = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
idx = DigestIndex.load(index)
for q in json.loads(sys.argv[4]) if len(sys.argv) > 4 else []:
    idx.search(q, k=10, mode="lexical")
top, first = {}, []
for q in queries:
    t = time.perf_counter()
    top[q] = [h.paper.id for h in idx.search(q, k=10, mode="lexical")]
    first.append((time.perf_counter() - t) * 1000)
ms = []
for _ in range(repeat):
    for q in queries:
        t = time.perf_counter()
        idx.search(q, k=10, mode="lexical")
        ms.append((time.perf_counter() - t) * 1000)
print(json.dumps({"ms": ms, "top": top, "first": first}))
"""

_TXTAI_CLI = """
import sys
from txtai import Embeddings
emb = Embeddings()
emb.load(sys.argv[1])
for hit in emb.search(sys.argv[2], 5):
    print(hit)
"""


#: digest_rag's passages of a corpus, as its build cuts them (model tokenizer, default chunker settings, title
#: line): argv corpus, model, out.jsonl. One JSON object per passage: id (the chunk id), paper, text.
_PASSAGES = """
import json, sys
from digest_rag.build.chunking import chunk_paper, passage_text
from digest_rag.dense.model_files import inspect_model, token_counter
from digest_rag.models import ChunkerSettings
from digest_rag.parsing import parse_paths
corpus, model, out = sys.argv[1:4]
facts = inspect_model(model)
settings = ChunkerSettings(max_tokens=min(512, facts.max_seq_length))
count = token_counter(facts)
with open(out, "w", encoding="utf-8") as fh:
    for paper in sorted(parse_paths([corpus]).papers, key=lambda p: p.id):
        for c in chunk_paper(paper, settings, count, facts.passage_prefix):
            text = passage_text(paper, c.text, settings, c.section_kind)
            fh.write(json.dumps({"id": c.id, "paper": paper.id, "text": text}, ensure_ascii=False) + "\\n")
"""

_TXTAI_COLD = """
import json, sys
from txtai import Embeddings
passages, model, out = sys.argv[1:4]
rows = [(r["id"], r["text"], None) for r in map(json.loads, open(passages, encoding="utf-8"))]
emb = Embeddings(path=model, hybrid=True, backend="faiss", instructions={"query": "query: ", "data": "passage: "})
emb.index(rows)
emb.save(out)
print(len(rows))
"""

_TXTAI_UPSERT = """
import json, sys
from txtai import Embeddings
index, before, after = sys.argv[1:4]
old = {r["id"]: r for r in map(json.loads, open(before, encoding="utf-8"))}
new = {r["id"]: r for r in map(json.loads, open(after, encoding="utf-8"))}
changed_papers = {r["paper"] for i, r in new.items() if old.get(i, {}).get("text") != r["text"]}
changed_papers |= {r["paper"] for i, r in old.items() if i not in new}
emb = Embeddings()
emb.load(index)
gone = [i for i in old if i not in new]
if gone:
    emb.delete(gone)
emb.upsert([(i, r["text"], None) for i, r in new.items() if r["paper"] in changed_papers])
emb.save(index)
print(sum(1 for r in new.values() if r["paper"] in changed_papers))
"""


def build_rows(args: argparse.Namespace) -> None:
    """Cold build and 1%-changed rebuild, digest_rag against txtai, fresh processes, interleaved."""
    env = code_env(ROOT)
    model = e5_shaped_model()
    work = args.work
    results: dict[str, dict[str, list[float]]] = {}
    counts: dict[str, int] = {}
    for r in range(args.rounds):
        corpus = work / "corpus"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        if not args.no_seeds:
            shutil.copytree(SEEDS, corpus / "seeds")
        for sub in sorted(ML_PAPERS.iterdir()) if ML_PAPERS.is_dir() else []:
            if sub.is_dir() and (args.subset is None or sub.name in args.subset):
                shutil.copytree(sub, corpus / "ml-papers" / sub.name)
        before, after = work / "passages-before.jsonl", work / "passages-after.jsonl"
        timed_process([sys.executable, "-c", _PASSAGES, str(corpus), str(model), str(before)], env)
        ours, theirs = work / "digest_rag-index", work / "txtai-index"
        ours_cmd = [sys.executable, "-m", "digest_rag", "build", str(corpus), "--index", str(ours), "--model", str(model),
                    "--json", "-q"]
        order = ("digest_rag", "txtai") if r % 2 == 0 else ("txtai", "digest_rag")
        for name in order:
            cmd = ours_cmd if name == "digest_rag" else [sys.executable, "-c", _TXTAI_COLD, str(before), str(model), str(theirs)]
            wall, _rss, out = timed_process(cmd, env, timeout=7200)
            results.setdefault("cold build (process wall s)", {}).setdefault(name, []).append(wall)
            print(f"# round {r + 1}: {name} cold {wall:.1f}s", file=sys.stderr, flush=True)
        counts["passages"] = sum(1 for _ in open(before, encoding="utf-8"))
        # 1% of the papers: append a sentence to the files holding the fewest papers until 1% are touched.
        papers: dict[str, set[str]] = {}
        for row in map(json.loads, open(before, encoding="utf-8")):
            papers.setdefault(row["paper"], set())
        from digest_rag.parsing import parse_paths

        by_file: dict[str, int] = {}
        for p in parse_paths([corpus]).papers:
            by_file[p.source] = by_file.get(p.source, 0) + 1
        want, touched = max(1, math.ceil(0.01 * len(papers))), 0
        for src, n in sorted(by_file.items(), key=lambda kv: (kv[1], kv[0])):
            if touched >= want:
                break
            with open(src, "a", encoding="utf-8") as fh:
                fh.write("\n\nThis paragraph was added by the peers benchmark to change the paper.\n")
            touched += n
        counts["papers"], counts["changed papers"] = len(papers), touched
        timed_process([sys.executable, "-c", _PASSAGES, str(corpus), str(model), str(after)], env)
        for name in order:
            cmd = ours_cmd if name == "digest_rag" else [sys.executable, "-c", _TXTAI_UPSERT, str(theirs), str(before),
                                                          str(after)]
            wall, _rss, out = timed_process(cmd, env, timeout=7200)
            results.setdefault("1%-changed rebuild (process wall s)", {}).setdefault(name, []).append(wall)
            if name == "digest_rag":
                counts["digest_rag encoded"] = json.loads(out.strip().splitlines()[-1])["encoded"]
            else:
                counts["txtai upserted"] = int(out.strip().splitlines()[-1])
            print(f"# round {r + 1}: {name} 1% rebuild {wall:.1f}s", file=sys.stderr, flush=True)
    print(f"# machine: {machine()}; txtai {txtai_version()}; {args.rounds} round(s) interleaved; "
          f"median (min-max); {counts}")
    print("| build row | digest_rag | txtai | digest_rag / txtai | target | met? |")
    print("|---|---|---|---|---|---|")
    for row, cells in results.items():
        ours_s, theirs_s = cells["digest_rag"], cells["txtai"]
        ratio = statistics.median(ours_s) / statistics.median(theirs_s)
        fmt = "{:.1f}"
        print(f"| {row} | {fmt.format(statistics.median(ours_s))} ({fmt.format(min(ours_s))}-{fmt.format(max(ours_s))}) "
              f"| {fmt.format(statistics.median(theirs_s))} ({fmt.format(min(theirs_s))}-{fmt.format(max(theirs_s))}) "
              f"| {ratio:.2f}x | <= 1.0x | {'yes' if ratio <= 1.0 else '**no**'} |")


def txtai_version() -> str:
    """txtai's installed version (the package has no __version__ attribute)."""
    from importlib.metadata import version

    return version("txtai")


def _result(out: str) -> dict:
    """A query script's last line: {"ms": [...], "top": {question: [ids, best first]}} (a bare list: ms only)."""
    res = json.loads(out.strip().splitlines()[-1])
    return res if isinstance(res, dict) else {"ms": res, "top": {}}


def warmup_questions(path: Path, asked: list[dict], n: int = 10) -> list[str]:
    """``n`` questions of the dev file that are not among ``asked``: what digest_rag warms up on, so that
    its "first search" timings are of questions it never saw (their Korean words, unknown to the index's
    word table, still reach Kiwi)."""
    taken = {q["query"] for q in asked}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["query"] for r in rows if r["query"] not in taken][-n:]


def dev_questions(path: Path, n: int) -> list[dict]:
    """`n` answerable questions of a dev file: its kinds taken in turn (known-item, paraphrase, ...), each kind
    in the file's order, so a file that lists one kind first still gives a mix."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_kind: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("relevant"):
            by_kind.setdefault(r.get("kind") or "-", []).append(r)
    picked: list[dict] = []
    while len(picked) < n and any(by_kind.values()):
        for queue in by_kind.values():
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
    if len(picked) < n:
        sys.exit(f"{path} has {len(picked)} answerable questions, fewer than --n {n}")
    return picked


def quality(top: dict[str, list], questions: list[dict], to_paper: dict[str, str] | None) -> tuple[float, float]:
    """R@1 and MRR@10 of one system's top lists; `to_paper` maps a peer's passage ids to paper ids."""
    r1 = mrr = 0.0
    for q in questions:
        papers: list[str] = []
        for i in top[q["query"]]:
            pid = to_paper[str(i)] if to_paper is not None else str(i)
            if pid not in papers:
                papers.append(pid)
        rank = next((k for k, pid in enumerate(papers[:10], 1) if pid in q["relevant"]), None)
        r1 += rank == 1
        mrr += 1 / rank if rank else 0.0
    return r1 / len(questions), mrr / len(questions)


def lexical_peers(lexical_index: Path, env: dict[str, str]) -> Path:
    """Passages of `lexical_index`, txtai's keyword index and the bm25s + Kiwi index over them (built once per index)."""
    out = PEERS / "lexical"
    stamp = json.dumps([str(lexical_index.resolve()), (lexical_index / "manifest.json").stat().st_mtime_ns])
    if (out / "stamp.json").is_file() and (out / "stamp.json").read_text() == stamp:
        return out
    shutil.rmtree(out, ignore_errors=True)
    print("# building the lexical peers' indexes (once per index)", file=sys.stderr)
    timed_process([sys.executable, "-c", _LEXICAL_PASSAGES, str(lexical_index), str(out)], env, timeout=3600)
    passages = str(out / "passages.jsonl")
    timed_process([sys.executable, "-c", _BUILD_TXTAI_KEYWORD, passages, str(out / "txtai-bm25")], env, timeout=3600)
    timed_process([sys.executable, "-c", _BUILD_BM25S_KIWI, passages, str(out / "bm25s-kiwi")], env, timeout=3600)
    (out / "stamp.json").write_text(stamp)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, default=WORK / "cli-current" / "torch",
                    help="digest_rag hybrid (torch) index over seeds + ml-papers (bench_cli.py builds it)")
    ap.add_argument("--lexical-index", type=Path, default=WORK / "cli-current" / "lexical")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 5 for query rows, 1 for --build)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--lexical-only", action="store_true",
                    help="only the lexical rows (no model: txtai's hybrid index takes a full encoding to build)")
    ap.add_argument("--questions", type=Path, default=ROOT / "eval" / "ml_papers_kinds_tune.jsonl",
                    help="dev questions of the lexical rows (JSON Lines with relevant paper ids)")
    ap.add_argument("--n", type=int, default=30, help="how many of its answerable questions (default 30)")
    ap.add_argument("--build", action="store_true", help="the build rows (cold, 1%%-changed) instead of the query rows")
    ap.add_argument("--subset", nargs="*", default=None, help="--build: ml-papers sub-folders to use (default: all)")
    ap.add_argument("--no-seeds", action="store_true", help="--build: leave the seed digests out")
    ap.add_argument("--work", type=Path, default=PEERS / "build", help="--build: scratch directory")
    args = ap.parse_args()
    try:
        import txtai  # noqa: F401
    except ImportError:
        sys.exit("txtai is not installed: pip install 'digest-rag[bench]'")
    if args.build:
        args.rounds = args.rounds or 1
        build_rows(args)
        return
    args.rounds = args.rounds or 5
    for need in [args.lexical_index] + ([] if args.lexical_only else [args.index]):
        if not (need / "manifest.json").is_file():
            sys.exit(f"no index at {need}: run python benchmarks/bench_cli.py --prepare-only first")
    env = code_env(ROOT)
    questions = dev_questions(args.questions, args.n)
    lex_queries = json.dumps([q["query"] for q in questions], ensure_ascii=False)
    warmup = json.dumps(warmup_questions(args.questions, questions), ensure_ascii=False)
    lex = lexical_peers(args.lexical_index, env)
    to_paper = json.loads((lex / "chunk_papers.json").read_text())
    hybrid_dir = PEERS / "txtai-hybrid"
    if not args.lexical_only and not hybrid_dir.is_dir():
        PEERS.mkdir(parents=True, exist_ok=True)
        print("# building txtai's hybrid index (once)", file=sys.stderr)
        timed_process([sys.executable, "-c", _BUILD_TXTAI, str(args.index), str(e5_shaped_model()), str(hybrid_dir),
                       str(PEERS / "txtai-bm25")], env, timeout=7200)
    queries = json.dumps(QUERIES, ensure_ascii=False)
    rows: dict[str, dict[str, list[float]]] = {}
    tops: dict[str, dict[str, list]] = {}
    for r in range(args.rounds):
        runs: dict[str, dict[str, list[str]]] = {}
        if not args.lexical_only:
            runs["in-process hybrid p50 ms"] = {
                "digest_rag": [sys.executable, "-c", IN_PROCESS_SEARCH, str(args.index), "hybrid", str(args.repeat), queries],
                "txtai": [sys.executable, "-c", _TXTAI, str(hybrid_dir), str(args.repeat), queries],
            }
        runs["in-process lexical p50 ms"] = {
            "digest_rag": [sys.executable, "-c", _DIGEST_LEXICAL, str(args.lexical_index), str(args.repeat), lex_queries,
                           warmup],
            "txtai": [sys.executable, "-c", _TXTAI, str(lex / "txtai-bm25"), str(args.repeat), lex_queries],
            "bm25s+Kiwi": [sys.executable, "-c", _BM25S_KIWI, str(lex / "bm25s-kiwi"), str(args.repeat), lex_queries],
        }
        if not args.lexical_only:
            runs["one CLI hybrid search process"] = {
                "digest_rag": [sys.executable, "-m", "digest_rag.frontends.cli", "search", QUERY, "--index", str(args.index), "-k", "5"],
                "txtai": [sys.executable, "-c", _TXTAI_CLI, str(hybrid_dir), QUERY],
            }
        for row, systems in runs.items():
            names = list(systems)
            for name in names[r % len(names):] + names[:r % len(names)]:  # the order rotates round by round
                wall, rss, out = timed_process(systems[name], env)
                cell = rows.setdefault(row, {})
                if row.startswith("in-process"):
                    res = _result(out)
                    cell.setdefault(name, []).append(statistics.median(res["ms"]))
                    if "first" in res:
                        cell.setdefault(name + ", first search", []).append(statistics.median(res["first"]))
                    tops.setdefault(row, {})[name] = res["top"]
                else:
                    cell.setdefault(name + " wall", []).append(wall)
                    cell.setdefault(name + " rss", []).append(rss)
        print(f"# round {r + 1}/{args.rounds} done", file=sys.stderr)

    print(f"# machine: {machine()}; txtai {txtai_version()}; {args.rounds} rounds, order rotated; median (min-max)")

    def cell(xs: list[float], fmt: str) -> str:
        return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"

    if "in-process hybrid p50 ms" in rows:
        print("| query row | digest_rag | txtai | digest_rag / txtai | target | met? |")
        print("|---|---|---|---|---|---|")
        ours, theirs = rows["in-process hybrid p50 ms"]["digest_rag"], rows["in-process hybrid p50 ms"]["txtai"]
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(f"| in-process hybrid p50 ms | {cell(ours, '{:.1f}')} | {cell(theirs, '{:.1f}')} | {ratio:.2f}x | <= 1.0x "
              f"| {'yes' if ratio <= 1.0 else '**no**'} |")
    lexical = rows["in-process lexical p50 ms"]
    kinds = {k: sum((q.get("kind") or "-") == k for q in questions) for k in sorted({q.get("kind") or "-" for q in questions})}
    print(f"\n# lexical: {len(questions)} questions of {args.questions.name} ({kinds}), "
          f"{sum(not any('a' <= c.lower() <= 'z' for c in q['query']) for q in questions)} of them Hangul only")
    print("| lexical search | p50 ms | R@1 | MRR@10 | digest_rag p50 / this | target | met? |")
    print("|---|---|---|---|---|---|---|")
    ours_p50 = statistics.median(lexical["digest_rag"])
    for name, target in (("digest_rag", None), ("txtai", 1.0), ("bm25s+Kiwi", 2.5)):
        r1, mrr = quality(tops["in-process lexical p50 ms"][name], questions, None if name == "digest_rag" else to_paper)
        ratio = ours_p50 / statistics.median(lexical[name])
        met = "" if target is None else ("yes" if ratio <= target else "**no**")
        print(f"| {name} | {cell(lexical[name], '{:.2f}')} | {r1:.3f} | {mrr:.3f} | {ratio:.2f}x "
              f"| {'' if target is None else f'<= {target}x'} | {met} |")
    first = lexical.get("digest_rag, first search")
    if first:
        # The rows above time each question again after its first search (--repeat times): digest_rag then
        # has the question's analysis (and Kiwi's reading) kept; the peers analyse every time. This row is
        # each question's first search after warming up on other questions: what a new question costs.
        print(f"| digest_rag, each question's first search (no kept analysis) | {cell(first, '{:.2f}')} | | | "
              f"vs txtai {statistics.median(first) / statistics.median(lexical['txtai']):.2f}x, vs bm25s+Kiwi "
              f"{statistics.median(first) / statistics.median(lexical['bm25s+Kiwi']):.2f}x | | |")
    cli_row = rows.get("one CLI hybrid search process")
    for what, unit, fmt in (("wall", "s", "{:.2f}"), ("rss", "MiB", "{:.0f}")) if cli_row else ():
        ours, theirs = cli_row["digest_rag " + what], cli_row["txtai " + what]
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(f"| one CLI hybrid search process, {'wall' if what == 'wall' else 'peak RSS'} {unit} | {cell(ours, fmt)} "
              f"| {cell(theirs, fmt)} | {ratio:.2f}x | <= 1.0x | {'yes' if ratio <= 1.0 else '**no**'} |")


if __name__ == "__main__":
    main()
