"""The Ray engine: a build's parse, chunk and embed stages on a Ray cluster, its FAISS index from merged shards.

What runs where:

- the **driver** (the process that called ``build``/``update``) lists and
  reads the input files (so workers need no shared filesystem), merges the
  parsed papers, looks every chunk's passage hash up in the embedding cache,
  writes new embeddings through the cache, trains the FAISS index on the
  fixed-seed sample, writes the store and the lexical index, and commits the
  generation under the writer lock, exactly as the local engine does;
- **Ray Data tasks** parse files (one row per file), then chunk the merged
  papers (each worker process makes the tokenizer's counter once);
- a **Ray Data actor pool of encoders** embeds only the cache misses
  (``map_batches``; each actor loads the model once with the build's backend
  and batch size, on ``device``, and may hold ``gpus_per_worker`` GPUs);
- **Ray tasks** add contiguous shards of the vectors to copies of the trained
  FAISS index; the driver merges them in order (:func:`vectors.merge_shards`),
  which gives the single-process index byte for byte.

Every stage's results come back tagged with their position and are put back
in order, so chunk ids, chunk order and the index are those of a local
build. Ray retries a task or restarts an actor whose worker died; a killed
driver leaves the previous generation in place (nothing is committed before
the manifest swap), and embeddings already written to the cache are reused by
the next build.

Ray is an optional extra (``pip install "digest-rag[ray]"``); without it
:func:`import_ray` raises a UsageError with that hint.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from digest_rag.build.chunking import TokenCounter, approx_token_count, chunk_papers
from digest_rag.build.engines import encode_step
from digest_rag.models import ProgressCallback
from digest_rag.errors import ParseError, UsageError
from digest_rag.models import Chunk, ChunkerSettings, Paper
from digest_rag.parsing import ParseResult, Skip, check_strict, combine_parsed, corpus_files, file_name_error, parse_bytes
from digest_rag.text import read_bytes

if TYPE_CHECKING:  # pragma: no cover
    from digest_rag.build.parse_cache import ParseCache
    from digest_rag.build.spool import PaperSpool
    from digest_rag.dense.encoder import Encoder

log = logging.getLogger(__name__)

RAY_INSTALL_HINT = 'the ray engine needs Ray Data, which is not installed; install it with: pip install "digest-rag[ray]"'
# Papers per chunking task at most: enough to amortise a task, small enough to spread over workers.
PAPERS_PER_TASK = 256
# Rows per FAISS shard: below this, shipping a shard costs more than adding it.
SHARD_ROWS = 50_000
# Environment the workers need to behave like the driver (offline hub, caches, thread counts).
_FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "HF_HUB_CACHE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM",
                  "DIGEST_RAG_CACHE", "DIGEST_RAG_MODEL")

_CHUNKS = TypeAdapter(list[Chunk])


class RayOptions(BaseModel):
    """Where and how wide a Ray build runs."""

    model_config = ConfigDict(frozen=True)

    address: str | None = Field(
        default=None,
        description="Ray cluster to join ('auto', 'HOST:6379' or 'ray://HOST:10001'); None starts a local instance "
        "(or joins the one $RAY_ADDRESS names, or uses the one this process already initialised)",
    )
    workers: int | None = Field(default=None, ge=1, description="encoder actors; default: one per node, "
                                "or cluster GPUs / gpus_per_worker")
    gpus_per_worker: float = Field(default=0.0, ge=0.0, description="GPUs each encoder actor holds (0: CPU encoding)")
    device: str | None = Field(default=None, description="the encoders' device; default cuda when actors hold GPUs, "
                               "else cpu (an actor without a GPU share must not use one)")


class EncoderSpec(BaseModel):
    """What a worker needs to load the very encoder the driver would: same model, backend, device, batch size."""

    model_config = ConfigDict(frozen=True)

    model: str
    backend: str = "torch"
    device: str | None = None
    batch_size: int = 32


def import_ray() -> ModuleType:
    """The ``ray`` module with Ray Data, or a UsageError with the install hint (CLI exit 1)."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is a separate extra of ray
    except ImportError as exc:
        raise UsageError(RAY_INSTALL_HINT) from exc
    return ray


# ------------------------------------------------------------------------------ worker side
# Module-level functions and classes: Ray ships them by reference, workers import digest_rag.


@functools.lru_cache(maxsize=4)
def _token_counter(spec_json: str) -> TokenCounter:
    """The model's token counter, made once per worker process.

    From the model's tokenizer.json alone when `model_files` can read it (no
    torch, no weights), else from the loaded model on CPU: the same counts either way.
    """
    from digest_rag.dense.model_files import inspect_model, token_counter

    spec = EncoderSpec.model_validate_json(spec_json)
    facts = inspect_model(spec.model)
    if facts is not None:
        return token_counter(facts)
    from digest_rag.dense.encoder import Encoder

    return Encoder.load(spec.model, device="cpu", backend="torch").count_tokens


def _parse_row(row: dict[str, Any]) -> dict[str, Any]:
    """Parse one file's bytes; a ParseError comes back as its message (the driver makes it a Skip)."""
    source = str(row["source"])
    try:
        result = parse_bytes(bytes(row["data"]), source)
    except ParseError as exc:
        return {"i": row["i"], "source": source, "result": "", "error": str(exc)}
    return {"i": row["i"], "source": source, "result": result.model_dump_json(), "error": ""}


def _chunk_batch(batch: dict[str, np.ndarray], settings_json: str, spec_json: str, prefix: str) -> dict[str, np.ndarray]:
    """Chunk a batch of papers (JSON); without a model spec (lexical-only) with the approximate token count."""
    settings = ChunkerSettings.model_validate_json(settings_json)
    count = _token_counter(spec_json) if spec_json else approx_token_count
    out = [_CHUNKS.dump_json(chunk_papers([Paper.model_validate_json(str(p))], settings, count, prefix)).decode()
           for p in batch["paper"]]
    return {"i": batch["i"], "chunks": np.array(out, dtype=object)}


class _Embedder:
    """One encoder per actor, loaded once; embeds batches of passages (the model prefix is added here)."""

    def __init__(self, spec_json: str, threads: int) -> None:
        from digest_rag.dense.encoder import Encoder
        from digest_rag.threads import configure_threads

        # Ray gives each actor `threads` CPUs; torch would otherwise size itself to the whole node.
        configure_threads(threads, force=True)
        spec = EncoderSpec.model_validate_json(spec_json)
        self.encoder = Encoder.load(spec.model, device=spec.device, batch_size=spec.batch_size, backend=spec.backend)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vecs = self.encoder.encode_passages([str(t) for t in batch["text"]], batches_in_order=True)
        return {"i": batch["i"], "vec": vecs}


# ------------------------------------------------------------------------------ driver side


class RayEngine:
    """A connection to a Ray cluster and the build stages that run on it.

    Use as a context manager: it joins (or starts) Ray on entry and shuts
    down only an instance it started itself.

    Example:
        >>> with RayEngine(RayOptions(workers=2)) as engine:  # doctest: +SKIP
        ...     parsed = engine.parse(["corpus"])
    """

    def __init__(self, options: RayOptions | None = None) -> None:
        self.options = options or RayOptions()
        self._ray = import_ray()
        self._started = False

    # -------------------------------------------------------------- connection
    def __enter__(self) -> RayEngine:
        ray = self._ray
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
            runtime_env: dict[str, Any] = {"env_vars": env}
            package = str(Path(__file__).resolve().parent.parent)  # the digest_rag package
            if self.options.address or os.environ.get("RAY_ADDRESS"):
                # Another machine's workers get this very digest_rag (its dependencies must be installed there).
                runtime_env["py_modules"] = [package]
            else:
                env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(package).parent), os.environ.get("PYTHONPATH")) if p)
            try:
                ray.init(address=self.options.address, runtime_env=runtime_env, include_dashboard=False,
                         logging_level=logging.WARNING, log_to_driver=False, configure_logging=True)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.options.address or "a local Ray instance"
                raise UsageError(f"cannot start or join Ray at {where}: {' '.join(str(exc).split())[:200]}") from exc
            self._started = True
        ctx = self._ray.data.DataContext.get_current()
        # Our own progress callback reports the stages; results are put back in order by position anyway.
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.execution_options.preserve_order = True
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False

    def _resources(self) -> dict[str, float]:
        return {k: float(v) for k, v in self._ray.cluster_resources().items()}

    def workers(self) -> int:
        """Actors per pool: the option, else cluster GPUs / gpus_per_worker, else one per node."""
        if self.options.workers:
            return self.options.workers
        res = self._resources()
        if self.options.gpus_per_worker > 0:
            gpus = res.get("GPU", 0.0)
            if gpus < self.options.gpus_per_worker:
                raise UsageError(f"the Ray cluster has {gpus:g} GPUs; --gpus-per-worker {self.options.gpus_per_worker:g} needs more")
            return max(1, int(gpus // self.options.gpus_per_worker))
        nodes = sum(1 for n in self._ray.nodes() if n.get("Alive"))
        return max(1, nodes)

    def cpus_per_worker(self) -> int:
        """CPUs each encoder actor takes (and sizes torch's threads to): the cluster's share per worker."""
        cpus = self._resources().get("CPU", 1.0)
        return max(1, int(cpus // self.workers()))

    # ------------------------------------------------------------------ stages
    parses_here = False

    def parse_into(self, spool: PaperSpool, paths: list[str | Path], strict: bool, progress: ProgressCallback | None,
                   cache: ParseCache | None = None, listing: tuple[list[Path], list[Skip]] | None = None,
                   digests: Mapping[str, bytes] | None = None) -> None:
        """The merged result of `parse` (files read here, parsed on the cluster); no parse cache."""
        spool.add_result(self.parse(paths, strict, progress))

    def parse(self, paths: Iterable[str | Path], strict: bool = False,
              progress: ProgressCallback | None = None) -> ParseResult:
        """`parsing.parse_paths` with each file parsed by a Ray Data task: the same ParseResult.

        The driver reads the files (workers need no shared filesystem) and
        merges the outcomes in path order exactly as ``parse_paths`` does.
        """
        if isinstance(paths, (str, Path)):
            paths = [paths]
        files, skips = corpus_files(paths)
        outcomes: dict[int, tuple[str, ParseResult | ParseError]] = {}
        rows = []
        for i, f in enumerate(files):
            bad_name = file_name_error(f)
            if bad_name is not None:
                outcomes[i] = (str(f).encode("utf-8", "backslashreplace").decode("utf-8"), bad_name)
                continue
            try:
                rows.append({"i": i, "source": str(f), "data": read_bytes(f)})
            except ParseError as exc:
                outcomes[i] = (str(f), exc)
        if progress:
            progress("parsing", len(outcomes), len(files))
        if rows:
            ds = self._ray.data.from_items(rows, override_num_blocks=min(len(rows), 4 * self.workers()))
            for row in ds.map(_parse_row).iter_rows():
                one = ParseError(row["error"]) if row["error"] else ParseResult.model_validate_json(row["result"])
                outcomes[int(row["i"])] = (str(row["source"]), one)
                if progress:
                    progress("parsing", len(outcomes), len(files))
        result = combine_parsed((outcomes[i] for i in range(len(files))), skips)
        return check_strict(result, strict)

    def chunk(self, papers: Sequence[Paper], settings: ChunkerSettings, count: TokenCounter | None = None,
              passage_prefix: str = "passage: ", model: str | None = None,
              progress: ProgressCallback | None = None) -> list[Chunk]:
        """`chunking.chunk_papers` in Ray Data tasks: the same chunks, in paper order.

        Workers count tokens with ``model``'s tokenizer (made once per worker
        process, from tokenizer.json when possible); without a model
        (lexical-only) with the approximate count. ``count`` is the driver's
        counter, unused here (the local engine's).
        """
        if not papers:
            return []
        rows = [{"i": i, "paper": p.model_dump_json()} for i, p in enumerate(papers)]
        blocks = min(len(rows), max(4 * self.workers(), math.ceil(len(rows) / PAPERS_PER_TASK)))
        ds = self._ray.data.from_items(rows, override_num_blocks=blocks)
        kwargs = {"settings_json": settings.model_dump_json(), "prefix": passage_prefix,
                  "spec_json": EncoderSpec(model=model).model_dump_json() if model else ""}
        per_paper: dict[int, str] = {}
        if progress:
            progress("chunking", 0, len(papers))
        for batch in ds.map_batches(_chunk_batch, batch_size=None, batch_format="numpy", fn_kwargs=kwargs).iter_batches(
                batch_size=None, batch_format="numpy"):
            for i, js in zip(batch["i"], batch["chunks"], strict=True):
                per_paper[int(i)] = str(js)
            if progress:
                progress("chunking", len(per_paper), len(papers))
        return [c for i in range(len(papers)) for c in _CHUNKS.validate_json(per_paper[i])]

    def encoder_spec(self, encoder: Encoder) -> EncoderSpec:
        """What the actors load: the driver's model, backend and batch size, on the workers' device."""
        device = self.options.device or ("cuda" if self.options.gpus_per_worker > 0 else "cpu")
        return EncoderSpec(model=encoder.name, backend=encoder.backend, device=device, batch_size=encoder.batch_size)

    def encode(self, encoder: Encoder, passages: Sequence[str], on_batch: Callable[[np.ndarray, np.ndarray], None],
               progress: ProgressCallback | None = None) -> None:
        """Embed ``passages`` (without model prefix) on an actor pool of encoders.

        ``on_batch(positions, vectors)`` is called on the driver as each batch
        arrives (in any order), so the caller writes it through the embedding
        cache at once: what was embedded before a crash is not embedded again.
        """
        total = len(passages)
        if not total:
            return
        spec = self.encoder_spec(encoder)
        step = encode_step(spec.batch_size)
        rows = [{"i": i, "text": t} for i, t in enumerate(passages)]
        ds = self._ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(total / step)))
        cpus = self.cpus_per_worker()
        ds = ds.map_batches(
            _Embedder, batch_size=step, batch_format="numpy",
            compute=self._ray.data.ActorPoolStrategy(size=min(self.workers(), math.ceil(total / step))),
            num_cpus=cpus, num_gpus=self.options.gpus_per_worker or None,
            fn_constructor_kwargs={"spec_json": spec.model_dump_json(), "threads": cpus},
        )
        done = 0
        if progress:
            progress("encoding", 0, total)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            on_batch(np.asarray(batch["i"], dtype=np.int64), np.asarray(batch["vec"], dtype=np.float32))
            done += len(batch["i"])
            if progress:
                progress("encoding", done, total)

    def build_faiss(
        self,
        ids: np.ndarray,
        vectors: np.ndarray,
        factory: str | None = None,
        progress: ProgressCallback | None = None,
        *,
        shard_rows: int = SHARD_ROWS,
    ) -> tuple[object, str]:
        """`vectors.build_faiss` with the shards added by Ray tasks and merged here: the same index."""
        from digest_rag.dense.faiss_index import build_faiss_sharded

        n = len(ids)
        step = max(1, shard_rows)
        shards = [(ids[s : s + step], vectors[s : s + step]) for s in range(0, n, step)] or [(ids, vectors)]

        def report(done: int, total: int) -> None:
            if progress:
                progress("merging", done, total)

        return build_faiss_sharded(shards, factory, dimension=int(vectors.shape[1]) if vectors.ndim == 2 else 0,
                                   # One shard gains nothing from a round trip through the cluster.
                                   mapper=self._map_tasks if len(shards) > 1 else None, progress=report)

    def _map_tasks(self, fn: Callable[..., np.ndarray], args: Sequence[tuple[Any, ...]]) -> Iterator[np.ndarray]:
        """Run ``fn(*a)`` for each ``a`` as Ray tasks; yield results in order. Equal arguments are shipped once."""
        ray = self._ray
        remote = ray.remote(max_retries=3)(fn)
        refs: dict[int, Any] = {}
        calls = []
        for a in args:
            put = []
            for v in a:
                if id(v) not in refs:
                    refs[id(v)] = ray.put(v)
                put.append(refs[id(v)])
            calls.append(remote.remote(*put))
        for ref in calls:
            yield ray.get(ref)

