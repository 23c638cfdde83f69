"""The files of a lexical index on disk: their names and format versions, the memory-mapped sorted vocabulary, and the checked readers of its JSON and .npy files."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from digest_rag.errors import IndexCorruptedError
from digest_rag.lexical.lexicon import LEXICON_FILE

# 2: lexicon.json (the mined bilingual lexicon) joined the files.
# 3: the vocabulary as sorted memory-mapped arrays instead of lexical.vocab.json (format 2 is still read).
FORMAT = 3


READABLE_FORMATS = (2, 3)


META_FILE = "lexical.json"


VOCAB_FILE = "lexical.vocab.json"


PARAMS_FILE = "lexical.params.json"


DATA_FILE = "lexical.data.npy"


INDICES_FILE = "lexical.indices.npy"


INDPTR_FILE = "lexical.indptr.npy"


CHUNK_IDS_FILE = "lexical.chunk_ids.npy"


# Format 3 keeps the vocabulary sorted and memory-mapped (tokens' UTF-8 bytes, their offsets, their term ids):
# a search looks its few terms up by binary search instead of parsing a million-entry JSON object per process
# (about 2.5 s and 100+ MB at a million papers).
VOCAB_BLOB_FILE = "lexical.vocab_bytes.npy"


VOCAB_OFFSETS_FILE = "lexical.vocab_offsets.npy"


VOCAB_IDS_FILE = "lexical.vocab_ids.npy"


SORTED_VOCAB_FILES = (VOCAB_BLOB_FILE, VOCAB_OFFSETS_FILE, VOCAB_IDS_FILE)


#: The files of every lexical index, format 2 or 3 (each format has its own vocabulary files besides).
LEXICAL_REQUIRED: tuple[str, ...] = (META_FILE, PARAMS_FILE, DATA_FILE, INDICES_FILE, INDPTR_FILE, CHUNK_IDS_FILE, LEXICON_FILE)


#: Every file `LexicalIndex.save` writes (format 3), in a fixed order.
LEXICAL_FILES: tuple[str, ...] = (META_FILE, PARAMS_FILE, *SORTED_VOCAB_FILES, DATA_FILE, INDICES_FILE, INDPTR_FILE, CHUNK_IDS_FILE,
                                  LEXICON_FILE)


#: Most tokens a `SortedVocab` remembers the answer for before it starts over.
VOCAB_MEMO_MAX = 1 << 16


class SortedVocab(Mapping[str, int]):
    """Token -> term id over the memory-mapped sorted vocabulary files: a lookup is a binary search
    over the tokens' UTF-8 bytes, so opening an index costs nothing per term."""

    def __init__(self, blob: np.ndarray, offsets: np.ndarray, ids: np.ndarray) -> None:
        # Plain ndarray views of the mapped files: indexing a np.memmap builds a memmap object per probe
        # (~20 per lookup), which was a fifth of a lexical search's time.
        self._blob, self._offsets, self._ids = (a.view(np.ndarray) for a in (blob, offsets, ids))
        # Answered lookups (-1: absent): a question's terms recur across questions, and each binary search
        # costs ~20 byte comparisons. Bounded; it starts over past VOCAB_MEMO_MAX tokens.
        self._memo: dict[str, int] = {}
        # Every token's id (`hold`), for a vocabulary small enough to hold: no lookup searches the files.
        self._held: dict[str, int] | None = None

    @classmethod
    def load(cls, directory: Path) -> SortedVocab:
        blob = read_npy(directory / VOCAB_BLOB_FILE)
        offsets = read_npy(directory / VOCAB_OFFSETS_FILE)
        ids = read_npy(directory / VOCAB_IDS_FILE)
        if blob.dtype != np.uint8:
            raise IndexCorruptedError(f"{directory / VOCAB_BLOB_FILE}: not a byte array")
        if offsets.dtype.kind not in "iu" or offsets.shape[0] < 1 or int(offsets[0]) != 0 \
                or int(offsets[-1]) != blob.shape[0] or np.any(np.diff(offsets) < 0):
            raise IndexCorruptedError(f"{directory / VOCAB_OFFSETS_FILE}: offsets do not match the token bytes")
        if ids.dtype.kind not in "iu" or ids.shape[0] != offsets.shape[0] - 1:
            raise IndexCorruptedError(f"{directory / VOCAB_IDS_FILE}: not one term id per token")
        return cls(blob, offsets, ids)

    def covered(self, n_terms: int) -> int:
        """How many of the tokens name one of the ``n_terms`` indexed terms."""
        return int(np.count_nonzero((self._ids >= 0) & (self._ids < n_terms)))

    def _token(self, i: int) -> bytes:
        return self._blob[int(self._offsets[i]) : int(self._offsets[i + 1])].tobytes()

    def hold(self) -> None:
        """Read every token once into a dict (~6 ms and ~2 MB for 17,000 tokens): lookups then search nothing."""
        self._held = dict(self.items())

    def __getitem__(self, token: str) -> int:
        held = self._held
        if held is not None:
            return held[token]
        tid = self._memo.get(token)
        if tid is None:
            tid = self._find(token)
            if len(self._memo) >= VOCAB_MEMO_MAX:
                self._memo.clear()
            self._memo[token] = tid
        if tid < 0:
            raise KeyError(token)
        return tid

    def get(self, token: object, default: int | None = None) -> int | None:  # type: ignore[override]
        # (Mapping's get and `in` go through a raised KeyError per miss: a question asks for ~20 terms.)
        if not isinstance(token, str):
            return default
        held = self._held
        if held is not None:
            return held.get(token, default)
        try:
            return self[token]
        except KeyError:
            return default

    def __contains__(self, token: object) -> bool:
        return self.get(token) is not None

    def _find(self, token: str) -> int:
        """The term id of ``token`` by binary search, -1 when absent."""
        want = token.encode("utf-8", "surrogatepass")
        lo, hi = 0, len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._token(mid) < want:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(self) and self._token(lo) == want:
            return int(self._ids[lo])
        return -1

    def __iter__(self) -> Iterator[str]:
        return (self._token(i).decode("utf-8") for i in range(len(self)))

    def items(self) -> Iterator[tuple[str, int]]:  # type: ignore[override]
        """(token, term id) pairs in token order, without a lookup per token (vocab_names, re-saving)."""
        ids = self._ids.tolist()
        return ((self._token(i).decode("utf-8"), ids[i]) for i in range(len(self)))

    def __len__(self) -> int:
        return int(self._ids.shape[0])


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IndexCorruptedError(f"{path}: missing lexical index file") from exc
    except (OSError, ValueError) as exc:  # ValueError: not JSON, bad UTF-8, an integer of 5,000 digits
        raise IndexCorruptedError(f"{path}: unreadable or not JSON ({exc})") from exc
    except RecursionError as exc:  # "[[[[..." 200k deep
        raise IndexCorruptedError(f"{path}: not a lexical index file (JSON nested too deeply)") from exc


def npy_header(fh: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """(shape, dtype) from an open .npy file's header, leaving the file at the first data byte.

    numpy parses the header as a Python literal: a hostile one raises
    SyntaxError, tokenize.TokenError, RecursionError or MemoryError as well as
    ValueError. Each is a damaged header here.
    """
    try:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            shape, _fortran, dtype = npy_format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _fortran, dtype = npy_format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        raise ValueError(f"bad header ({type(exc).__name__}: {' '.join(str(exc).split())[:100]})") from exc
    return tuple(shape), dtype


def read_npy(path: Path, length: int | None = None) -> np.ndarray:
    """One 1-d array from a .npy file, its header checked against the file size before anything is allocated.

    A forged header can announce 1e10 elements in a 100-byte file; numpy would
    try to allocate them first. The data that follows the header must be
    exactly shape x itemsize bytes (and ``length`` elements when given).
    """
    try:
        with open(path, "rb") as fh:
            shape, dtype = npy_header(fh)
            if dtype.hasobject:
                raise ValueError("object arrays are not allowed")
            items = math.prod(shape)
            data_bytes = os.fstat(fh.fileno()).st_size - fh.tell()
            if len(shape) != 1 or items * dtype.itemsize != data_bytes:
                raise ValueError(f"header announces shape {shape} of {dtype}, the file holds {data_bytes} data bytes")
            if length is not None and items != length:
                raise ValueError(f"{items} elements, expected {length}")
        # Memory-mapped: a search reads the pages of the terms it asks for, not the whole file.
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError as exc:
        raise IndexCorruptedError(f"{path}: missing lexical index file") from exc
    except (OSError, ValueError, EOFError, TypeError, MemoryError) as exc:
        # ValueError covers truncated data, bad headers and pickled object arrays.
        raise IndexCorruptedError(f"{path}: damaged .npy array ({exc})") from exc
    if not isinstance(arr, np.ndarray):
        raise IndexCorruptedError(f"{path}: not a single .npy array")
    return arr


class _Stream:
    """A file seen by numpy as a plain stream: `np.lib.format.write_array` then writes it through Python
    (16 MiB at a time), whose OSError carries the errno of a full disk. numpy's own ``tofile`` reports one
    as "N requested and 0 written" with no errno, which no error handler can recognise."""

    def __init__(self, fh: BinaryIO) -> None:
        self.write = fh.write


def save_npy(path: Path, array: np.ndarray) -> None:
    """`np.save` (no pickle) whose failures are OSErrors with an errno and this file's name."""
    try:
        with open(path, "wb") as fh:
            npy_format.write_array(_Stream(fh), np.asarray(array), allow_pickle=False)
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise
