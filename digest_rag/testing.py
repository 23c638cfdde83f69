"""Offline stand-ins for the real E5 models, for tests, notebooks and benchmarks.

`build_tiny_model` learns a WordPiece tokenizer from the texts you give it and
saves a randomly initialised BERT encoder with mean pooling as a
sentence-transformers directory; the same texts and seed give the same model. Its embeddings carry no meaning beyond shared
tokens, but every code path (loading, prefixes, tokenisation limits,
normalisation, FAISS) runs exactly as with the real model, with no download.

`build_e5_shaped_model` does the same at the exact multilingual-e5-small shape
(12 layers, hidden 384, 12 heads, FFN 1536, vocab 250,037), so speed and memory
measured with it are the real model's.

`running_server` runs ``digest-rag serve`` on a free local port for the length of
a ``with`` block (browser tests, load tests).
"""

from __future__ import annotations

import heapq
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from digest_rag.text import read_text

E5_SMALL_SHAPE: dict[str, int] = {
    "num_hidden_layers": 12,
    "hidden_size": 384,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "vocab_size": 250_037,
    "max_position_embeddings": 514,
}

TINY_SHAPE: dict[str, int] = {
    "num_hidden_layers": 2,
    "hidden_size": 128,
    "num_attention_heads": 2,
    "intermediate_size": 256,
    "vocab_size": 8_000,
    "max_position_embeddings": 514,
}


SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _wordpiece_vocab(words: Counter[str], vocab_size: int) -> dict[str, int]:
    """A WordPiece vocabulary learnt from word counts as tokenizers' WordPieceTrainer learns one (byte-pair merges
    of the most frequent adjacent pieces, a word's inner pieces marked "##"), but the same for the same counts:
    ties between equally frequent pairs go to the pair that sorts first.

    The trainer itself breaks such ties in hash order, which changes from process to process: each build of the
    "same" stand-in model had another vocabulary, so other vectors, other calibrations and other test figures."""
    alphabet: dict[str, None] = {}
    spelt: dict[str, list[str]] = {}
    for word in sorted(words):
        pieces = [word[0], *(f"##{c}" for c in word[1:])]
        spelt[word] = pieces
        alphabet.update(dict.fromkeys(pieces))
    pairs: Counter[tuple[str, str]] = Counter()
    holders: dict[tuple[str, str], set[str]] = {}
    for word, pieces in spelt.items():
        for pair in zip(pieces, pieces[1:]):
            pairs[pair] += words[word]
            holders.setdefault(pair, set()).add(word)
    vocab = dict.fromkeys([*SPECIAL_TOKENS, *sorted(alphabet)])
    heap = [(-n, pair) for pair, n in pairs.items()]
    heapq.heapify(heap)
    while heap and len(vocab) < vocab_size:
        n, pair = heapq.heappop(heap)
        if pairs.get(pair, 0) != -n or n == 0:
            continue  # a stale entry: the count changed since it was pushed
        merged = pair[0] + pair[1].removeprefix("##")
        vocab[merged] = None  # the same text may come of two merges ("ab"+"##c", "a"+"##bc"): it counts once
        for word in sorted(holders.pop(pair, ())):
            old = spelt[word]
            new: list[str] = []
            i = 0
            while i < len(old):
                if i + 1 < len(old) and (old[i], old[i + 1]) == pair:
                    new.append(merged)
                    i += 2
                else:
                    new.append(old[i])
                    i += 1
            for p in zip(old, old[1:]):
                pairs[p] -= words[word]
            for p in zip(new, new[1:]):
                pairs[p] += words[word]
                holders.setdefault(p, set()).add(word)
            spelt[word] = new
            for p in set(zip(new, new[1:])) | set(zip(old, old[1:])):
                if pairs[p] > 0:
                    heapq.heappush(heap, (-pairs[p], p))
        pairs.pop(pair, None)
    return {t: i for i, t in enumerate(list(vocab)[:vocab_size])}


def _train_tokenizer(texts: Iterable[str], vocab_size: int, out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = Counter(w for t in texts for w, _span in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(t)))
    tok = Tokenizer(models.WordPiece(_wordpiece_vocab(words, vocab_size), unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    from tokenizers import processors

    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )
    fast.save_pretrained(str(out))


def clustered_vectors(
    n: int, dim: int, *, clusters: int, noise: float, query_noise: float, seed: int, queries: int = 50
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic unit vectors around ``clusters`` centres, random int64 ids, and ``queries`` noisy copies of some
    of them: a corpus where approximate FAISS indexes have real work to do, for tests and benchmarks."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = rng.choice(10**15, size=len(x), replace=False).astype(np.int64)
    q = x[rng.choice(len(x), queries, replace=False)] + query_noise * rng.standard_normal((queries, dim)).astype(np.float32)
    return ids, x, q


def build_random_model(
    output_dir: str | Path,
    texts: Iterable[str],
    shape: dict[str, int] | None = None,
    *,
    max_seq_length: int = 512,
    seed: int = 0,
    lexical_init: bool = False,
) -> Path:
    """Save a random-weight BERT-style sentence-transformers model with a tokenizer trained on ``texts``.

    The tokenizer's vocabulary is at most ``shape['vocab_size']``; the embedding
    matrix always has exactly that many rows, so cost matches the named shape.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    try:  # sentence-transformers >= 6 moved the module classes
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:  # pragma: no cover - older releases
        from sentence_transformers import models  # type: ignore[no-redef]

    shape = dict(shape or TINY_SHAPE)
    out = Path(output_dir)
    hf_dir = out / "_hf"
    hf_dir.mkdir(parents=True, exist_ok=True)
    texts = list(texts) or ["empty corpus"]
    _train_tokenizer(texts, min(shape["vocab_size"], 30_000), hf_dir)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=shape["vocab_size"],
        hidden_size=shape["hidden_size"],
        num_hidden_layers=shape["num_hidden_layers"],
        num_attention_heads=shape["num_attention_heads"],
        intermediate_size=shape["intermediate_size"],
        max_position_embeddings=shape["max_position_embeddings"],
    )
    bert = BertModel(config)
    if lexical_init:
        # Unit-scale word embeddings over tiny positional/layer weights: the random encoder then
        # behaves like a bag of random token vectors, so texts sharing tokens embed close together.
        # Tests of the dense path get a weak but real signal instead of pure noise.
        with torch.no_grad():
            bert.embeddings.word_embeddings.weight.normal_(0.0, 1.0)
            bert.embeddings.position_embeddings.weight.mul_(0.05)
            bert.embeddings.token_type_embeddings.weight.mul_(0.05)
    from digest_rag.dense.quiet import no_progress_bars

    with no_progress_bars():  # "Writing model shards" / "Loading weights": noise in a test's or a notebook's stderr
        bert.save_pretrained(str(hf_dir))
        word = models.Transformer(str(hf_dir), max_seq_length=max_seq_length)
        pooling = models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
        st = SentenceTransformer(modules=[word, pooling], device="cpu")
        st.save(str(out))
    # The intermediate HF directory is only a build step; the saved ST directory is self-contained.
    import shutil

    shutil.rmtree(hf_dir, ignore_errors=True)
    return out


def build_tiny_model(output_dir: str | Path, texts: Iterable[str], *, seed: int = 0) -> Path:
    """A tiny (2-layer, 64-dim) offline model for tests; a few seconds on a CPU."""
    return build_random_model(output_dir, texts, TINY_SHAPE, seed=seed, lexical_init=True)


def build_e5_shaped_model(output_dir: str | Path, texts: Iterable[str], *, seed: int = 0) -> Path:
    """A random model with multilingual-e5-small's exact shape, for speed and memory benchmarks."""
    return build_random_model(output_dir, texts, E5_SMALL_SHAPE, seed=seed)


def corpus_texts(paths: Iterable[str | Path]) -> list[str]:
    """Lines of the given text files (directories expanded), for training a tokenizer."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in files:
            if f.is_file() and f.suffix.lower() in (".txt", ".md", ".jsonl", ".markdown"):
                try:
                    out.extend(line for line in read_text(f).splitlines() if line.strip())
                except Exception:
                    continue
    return out


#: Top-level packages a query process on a lexical or ONNX index must never import (seconds of start-up).
HEAVY_MODULES: tuple[str, ...] = ("torch", "sentence_transformers", "transformers", "sklearn")

_IMPORT_PROBE = """
import atexit, json, os, runpy, sys
heavy = tuple(json.loads(os.environ["PROBE_HEAVY"]))
def _report():
    with open(os.environ["PROBE_OUT"], "w") as f:
        json.dump(sorted(m for m in sys.modules if m.split(".")[0] in heavy), f)
atexit.register(_report)
sys.argv = ["digest-rag", *sys.argv[1:]]
runpy.run_module("digest_rag.frontends.cli", run_name="__main__")
"""


def cli_heavy_imports(args: Iterable[str], scratch: Path, timeout: float = 300,
                      modules: Iterable[str] = HEAVY_MODULES) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``digest-rag ARGS`` in a fresh interpreter; (CompletedProcess, which of ``modules`` it imported).

    The list is read from ``sys.modules`` at the process's exit, so it covers every import the command made.
    """
    import json
    import os
    import sys

    out = Path(scratch) / "heavy-modules.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PROBE_OUT": str(out), "PROBE_HEAVY": json.dumps(list(modules))}
    res = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, *args], capture_output=True, text=True,
                         timeout=timeout, env=env)
    return res, json.loads(out.read_text()) if out.is_file() else ["<no report: the process died>"]


def wait_paused(proc: subprocess.Popen[str], stage: str, timeout: float = 120.0) -> None:
    """Wait until a build run with DIGEST_RAG_TEST_PAUSE_AT=<stage> has printed its pause line and stopped.

    The build prints ``paused at <stage>`` on stderr and stops itself with
    SIGSTOP; this returns once the kernel reports the process stopped (state
    T), so a signal sent next lands at exactly that stage. Raises
    AssertionError (a test failure) when the process exits first or the
    timeout passes.
    """
    assert proc.stderr is not None, "start the build with stderr=subprocess.PIPE, text=True"
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"build exited (rc={proc.wait()}) before stage {stage}: {''.join(seen)[-2000:]}")
        seen.append(line)
        if f"paused at {stage}" in line:
            break
        assert time.monotonic() < deadline, f"no pause at {stage}"
    while Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1][0] != "T":
        assert time.monotonic() < deadline, f"build never stopped at {stage}"
        time.sleep(0.01)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerURL(str):
    """The base URL of a server started by :func:`running_server`; ``.pid`` is its process id."""

    pid: int


@contextmanager
def running_server(index_dir: str | Path, *, args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                   timeout: float = 180.0) -> Iterator[ServerURL]:
    """Run ``digest-rag serve`` on a free 127.0.0.1 port in a subprocess; yields its base URL, then stops it.

    Waits until ``/healthz`` answers; a server that exits or does not answer within ``timeout``
    seconds raises RuntimeError with the end of its stderr. ``args`` go to ``serve`` (e.g. ``--rate-limit 0``).
    """
    import os
    import subprocess
    import sys
    import tempfile
    import time
    import urllib.request

    port = free_port()
    url = ServerURL(f"http://127.0.0.1:{port}")
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "digest_rag.frontends.cli", "serve", "--index", str(index_dir), "--port", str(port), *args],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
        url.pid = proc.pid

        def tail() -> str:
            log.seek(0)
            return log.read().decode("utf-8", "replace")[-2000:]

        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"digest-rag serve exited with {proc.returncode}: {tail()}")
                try:
                    with urllib.request.urlopen(url + "/healthz", timeout=5) as res:  # noqa: S310 - our own server
                        if res.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"digest-rag serve did not answer within {timeout:.0f}s: {tail()}")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()  # uvicorn shuts down gracefully on SIGTERM
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
