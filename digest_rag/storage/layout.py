"""The index directory on disk: its file names, manifest.json, checksums, and what may be written there.

Layout of an index directory::

    indexes/.default.lock      the writer lock, beside the directory (see locking.py)
    indexes/default/
        manifest.json          the commit point: names the current generation, lists every file's sha256
        gen-20260101T120000-1a2b/
            store.sqlite       papers, chunks, embedding and token caches
            vectors.faiss      FAISS index over chunk ids (absent when lexical-only)
            lexical/           BM25 index (bm25s arrays + JSON) and the mined lexicon (lexicon.json)
        embedding-cache/       passage embeddings by model and text hash, written while a build
                               encodes (a cache: never read by searches, safe to delete; embedding_cache.py)
        parse-cache.sqlite     the papers parsed from each input file, by path, bytes and parser version
                               (a cache like the embedding cache; parse_cache.py)

Everything read from here is untrusted: the manifest may only name a
generation directory by its exact pattern and plain relative file names, and
every file is checked against its sha256 before FAISS or NumPy reads it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from digest_rag.storage.cachedir import cache_root
from digest_rag.errors import DigestRagError, IndexCorruptedError, IndexNotFoundError, IndexVersionError, UnsafeIndexPathError
from digest_rag.lexical.files import LEXICAL_REQUIRED
from digest_rag.models import IndexManifest

#: The format this digest_rag writes. Version 1 (0.1, no saved build options) is still read.
FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)
DEFAULT_INDEX_DIR = Path("indexes/default")
MANIFEST = "manifest.json"
STORE_FILE = "store.sqlite"
FAISS_FILE = "vectors.faiss"
LEXICAL_DIR = "lexical"
CACHE_DIR = "embedding-cache"
GENERATION_PREFIX = "gen-"
TMP_GENERATION_PREFIX = ".tmp-gen-"

GEN_NAME = re.compile(r"gen-[0-9A-Za-z-]{1,64}")
# Names a build itself creates inside an index directory; anything else there is someone else's.
# Each writer's manifest temp file carries its own token so two writers never share one.
_OWN_NAMES = re.compile(
    r"(manifest\.json|\.manifest\.json(?:\.[0-9a-f]{1,32})?\.tmp|gen-[0-9A-Za-z-]{1,64}|\.tmp-gen-[0-9A-Za-z-]{1,64}"
    r"|embedding-cache|parse-cache\.sqlite(?:-journal|-wal|-shm)?)"
)


def is_own_name(name: str) -> bool:
    """True for the names a build creates inside an index directory."""
    return bool(_OWN_NAMES.fullmatch(name))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(index_dir: Path) -> IndexManifest:
    """Parse and check manifest.json of an index directory.

    Raises IndexNotFoundError (no index there), IndexVersionError (a format this
    digest_rag cannot read: rebuild) or IndexCorruptedError (anything else wrong).
    """
    mpath = index_dir / MANIFEST
    if not index_dir.exists():
        raise IndexNotFoundError(f"{index_dir}: no such index directory; build one with: digest-rag build --index {index_dir}")
    if not mpath.is_file():
        raise IndexNotFoundError(f"{mpath}: no manifest; this is not a digest_rag index (build one with: digest-rag build --index {index_dir})")
    try:
        raw = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not JSON, bad UTF-8, a 5,000-digit integer
        raise IndexCorruptedError(f"{mpath}: manifest is not valid JSON ({exc})") from exc
    except RecursionError as exc:  # "[[[[..." 200k deep
        raise IndexCorruptedError(f"{mpath}: manifest is not a digest_rag manifest (JSON nested too deeply)") from exc
    if not isinstance(raw, dict) or raw.get("format_version") not in READABLE_FORMAT_VERSIONS:
        got = raw.get("format_version") if isinstance(raw, dict) else None
        raise IndexVersionError(
            f"{mpath}: unknown index format version {got!r} (this digest_rag reads "
            f"{', '.join(map(str, READABLE_FORMAT_VERSIONS))}); rebuild the index"
        )
    try:
        manifest = IndexManifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise IndexCorruptedError(f"{mpath}: manifest field {'.'.join(map(str, first['loc']))}: {first['msg']}") from exc
    # The manifest names paths we open (and a build later deletes): never let it point outside.
    if not GEN_NAME.fullmatch(manifest.data_dir):
        raise IndexCorruptedError(f"{mpath}: data_dir {manifest.data_dir!r} is not a generation directory name")
    for name in manifest.files:
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in parts):
            raise IndexCorruptedError(f"{mpath}: file name {name!r} is not a plain relative path")
    return manifest


def required_files(manifest: IndexManifest) -> list[str]:
    """Files every generation of this kind holds; the manifest must list (and checksum) each."""
    names = [STORE_FILE]
    if manifest.model_name is not None:
        names.append(FAISS_FILE)
    if manifest.lexical:
        names += [f"{LEXICAL_DIR}/{f}" for f in LEXICAL_REQUIRED]
    return names


#: Days a verified-markers folder of an index may go untouched before a build elsewhere deletes it.
VERIFIED_KEEP_DAYS = 30


def _verified_dir(index_dir: Path) -> Path:
    """The markers of one index directory (``verified/<hash of its real path>``): a build replaces them all."""
    return cache_root() / "verified" / hashlib.sha256(str(index_dir.resolve()).encode()).hexdigest()[:24]


def _verified_marker(index_dir: Path, f: Path, digest: str) -> Path | None:
    """The cache file recording that ``f``, as it is now, has sha256 ``digest``.

    Hashing every file on every load costs seconds per search at a million
    papers (GBs of store). A file's identity is its device, inode, size, mtime
    and ctime: any write changes the ctime (which user space cannot set back),
    so a file whose identity matches a marker is the file that was hashed.
    """
    try:
        st = f.stat()
        where = f.resolve()
    except OSError:
        return None
    key = f"{where}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{digest}"
    return _verified_dir(index_dir) / hashlib.sha256(key.encode()).hexdigest()[:40]


def mark_verified(index_dir: Path, manifest: IndexManifest) -> None:
    """Record the checksums a build just computed for the files it wrote, so that the first search
    after a build does not hash them again (a million papers' store is GBs).

    The markers of the generation it replaced are deleted (they name files that are gone), and so are
    markers in the old flat layout and folders of indexes untouched for `VERIFIED_KEEP_DAYS`: the cache
    holds about one marker per file of each index in use, not ~12 more per build for ever.
    """
    gen = index_dir / manifest.data_dir
    keep: set[Path] = set()
    for name, digest in manifest.files.items():
        marker = _verified_marker(index_dir, gen / name, digest)
        if marker is None:
            continue
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            return  # a read-only cache: the first load verifies
        keep.add(marker)
    _prune_verified(_verified_dir(index_dir), keep)


def _prune_verified(mine: Path, keep: set[Path]) -> None:
    """Delete this index's markers other than ``keep``, flat markers of old versions, and stale folders."""
    stale = time.time() - VERIFIED_KEEP_DAYS * 86400
    try:
        for p in mine.iterdir():
            if p not in keep:
                p.unlink(missing_ok=True)
        for p in mine.parent.iterdir():
            if p == mine or p.is_symlink():
                continue
            if p.is_file():
                p.unlink(missing_ok=True)  # the flat layout of digest_rag <= 0.2.0: unprunable, so all go
            elif p.is_dir() and p.stat().st_mtime < stale:
                shutil.rmtree(p, ignore_errors=True)
    except OSError:
        pass  # markers are a cache: a file that cannot go now is collected by a later build


def verify_files(index_dir: Path, manifest: IndexManifest, names: Iterable[str]) -> None:
    """Check that each named file exists and matches its manifest sha256 (hashed once per file version)."""
    gen = index_dir / manifest.data_dir
    for name in names:
        f = gen / name
        digest = manifest.files.get(name)
        if digest is None:
            raise IndexCorruptedError(f"{index_dir / MANIFEST}: does not list {name}; manifest and files disagree")
        if not f.is_file():
            raise IndexCorruptedError(f"{f}: file listed in the manifest is missing")
        marker = _verified_marker(index_dir, f, digest)
        if marker is not None and marker.is_file():
            continue  # this very file (same inode, size, mtime and ctime) matched this checksum before
        try:
            actual = sha256_file(f)
        except OSError as exc:
            raise IndexCorruptedError(f"{f}: cannot read ({exc.strerror or exc})") from exc
        if actual != digest:
            raise IndexCorruptedError(f"{f}: checksum mismatch (file altered or truncated); rebuild the index")
        if marker is not None:
            try:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
            except OSError:
                pass  # a read-only cache: verify again next time


def check_target(index_dir: Path) -> None:
    """Refuse to take over a directory that holds anything but a digest_rag index."""
    if not index_dir.exists():
        return
    if not index_dir.is_dir():
        raise UnsafeIndexPathError(f"{index_dir}: exists and is not a directory; refusing to overwrite it")
    if (index_dir / MANIFEST).is_file():
        return  # whether it is really ours is checked under the lock (build.previous_index)
    foreign = [p.name for p in index_dir.iterdir() if not is_own_name(p.name)]
    if foreign:
        raise UnsafeIndexPathError(
            f"{index_dir}: not empty and not a digest_rag index (found {', '.join(sorted(foreign)[:3])}); "
            "refusing to write there; choose another --index directory"
        )


def manifest_moved(index_dir: Path, seen: IndexManifest) -> bool:
    """True when manifest.json now names another generation than ``seen`` did."""
    try:
        return read_manifest(index_dir).data_dir != seen.data_dir
    except DigestRagError:
        return False


def check_recoverable(index_dir: Path, why: Exception) -> None:
    """Allow rebuilding over an unreadable manifest only when the directory is plainly an index.

    A foreign ``manifest.json`` (a web app's, say) must never be overwritten:
    the directory has to hold nothing but names a build creates, and at least
    one generation directory.
    """
    names = [p.name for p in index_dir.iterdir()]
    foreign = [n for n in names if not is_own_name(n)]
    has_gen = any((index_dir / n).is_dir() and n != MANIFEST for n in names if is_own_name(n))
    if foreign or not has_gen:
        found = f" (found {', '.join(sorted(foreign)[:3])})" if foreign else ""
        raise UnsafeIndexPathError(
            f"{index_dir}: {' '.join(str(why).split())}; the directory does not look like a digest_rag index{found}, "
            "refusing to overwrite it; move it away or choose another --index directory"
        )
