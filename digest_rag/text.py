"""Small text helpers shared by parsers, chunker and search: language, ids, decoding."""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import os
import re
import stat
import unicodedata
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path

from digest_rag.errors import ParseError
from digest_rag.models import Language

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LATIN = re.compile(r"[A-Za-z]")
#: Where a sentence ends: Latin or CJK terminal punctuation (full-width too) and the whitespace after it, or a
#: run of line breaks. The chunker's sentences, calibration's question sentences, the training passages and
#: the snippet window's sentence starts all cut here.
SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n+")

#: Hangul syllables are U+AC00 + (initial * 21 + vowel) * 28 + final: 19 initials, 21 vowels, 28 finals
#: (final 0: none).
HANGUL_FIRST = 0xAC00
HANGUL_VOWELS, HANGUL_FINALS = 21, 28


def hangul_parts(syllable: str) -> tuple[int, int, int] | None:
    """(initial, vowel, final) indices of one Hangul syllable; None for any other character."""
    code = ord(syllable) - HANGUL_FIRST
    if not 0 <= code < 19 * HANGUL_VOWELS * HANGUL_FINALS:
        return None
    rest, final = divmod(code, HANGUL_FINALS)
    initial, vowel = divmod(rest, HANGUL_VOWELS)
    return initial, vowel, final


_ARXIV_URL = re.compile(
    r"arxiv\.org/(?:abs|pdf|html)/(?P<id>\d{4}\.\d{4,5}|[a-z\-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?", re.I
)


def detect_language(text: str) -> Language:
    """'ko', 'en' or 'mixed' from the share of Hangul among letters.

    Korean commentary is full of English terms (LoRA, Attention), so a text
    counts as Korean when Hangul dominates, English when it is (almost) absent.
    """
    # Counting by deletion keeps memory flat: findall() on a 50 MB file builds a
    # list of millions of one-character strings (hundreds of MB).
    hangul = len(text) - len(_HANGUL.sub("", text))
    latin = len(text) - len(_LATIN.sub("", text))
    # A Hangul syllable carries about three Latin letters' worth of word.
    h = hangul * 3
    total = h + latin
    if total == 0:
        return "en"
    share = h / total
    if share >= 0.6:
        return "ko"
    if share <= 0.05:
        return "en"
    return "mixed"


def has_hangul(text: str) -> bool:
    """True when the text contains at least one Hangul character."""
    return bool(_HANGUL.search(text))


def arxiv_ids(text: str) -> list[str]:
    """arXiv ids of every arxiv.org link in the text, in order, without versions."""
    seen: list[str] = []
    for m in _ARXIV_URL.finditer(text):
        aid = m.group("id")
        if aid not in seen:
            seen.append(aid)
    return seen


def slugify(text: str, max_len: int = 60) -> str:
    """ASCII-ish lowercase slug; Hangul is kept (ids stay readable for Korean-only titles)."""
    norm = unicodedata.normalize("NFKC", text).lower()
    norm = re.sub(r"[^\w]+", "-", norm, flags=re.UNICODE).strip("-_")
    norm = re.sub(r"[-_]+", "-", norm)
    return norm[:max_len].rstrip("-") or "untitled"


def make_paper_id(title: str, date: _dt.date | None, arxiv_id: str | None = None) -> str:
    """The stable paper id: the arXiv id when known, else 'slug-of-title[-YYYY-MM-DD]'."""
    if arxiv_id:
        return arxiv_id
    slug = slugify(title)
    return f"{slug}-{date.isoformat()}" if date else slug


def stable_int64(*parts: object) -> int:
    """A non-negative int64 from a hash of the parts (FAISS ids must be int64)."""
    h = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "big") & 0x7FFF_FFFF_FFFF_FFFF


def sha256_text(text: str) -> str:
    """Hex sha256 of UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(items: Iterable[str], presorted: bool = False) -> str:
    """Order-independent sha256 over strings (corpus fingerprints).

    With ``presorted`` the caller hands them already sorted (streamed from SQLite: a million papers'
    JSON need not sit in memory to be sorted).
    """
    h = hashlib.sha256()
    for item in items if presorted else sorted(items):
        h.update(item.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


_ENCODINGS = ("utf-8-sig", "cp949", "euc-kr", "utf-16")


def decode_bytes(data: bytes, source: str = "<bytes>") -> str:
    """Decode corpus bytes: UTF-8 first, then the Korean legacy encodings (CP949/EUC-KR).

    Raises ParseError for binary data or bytes no candidate encoding accepts.
    """
    if b"\x00" in data[:4096] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ParseError(f"{source}: binary file (NUL bytes), not a text digest")
    for enc in _ENCODINGS:
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        if enc == "utf-16" and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
            continue
        return text.replace("\r\n", "\n").replace("\r", "\n")
    raise ParseError(f"{source}: not UTF-8, CP949 or EUC-KR text; re-save it as UTF-8")


class CorpusFile(type(Path())):  # type: ignore[misc] - the concrete PosixPath/WindowsPath class
    """A file found by walking a corpus directory: a Path that also knows the directory's real path.

    `read_bytes` opens such a file without following a link (O_NOFOLLOW) and checks that the file it
    opened really is inside ``corpus_root``: the listing's link check happens before the files are read, and
    a file swapped for a link to somewhere else in between must not be read.
    """

    corpus_root: Path | None

    def __new__(cls, *args: str | os.PathLike[str], root: Path | None = None) -> CorpusFile:
        self = super().__new__(cls, *args)
        self.corpus_root = root
        return self


def _opened_path(fd: int) -> str | None:
    """Where an open descriptor really is (Linux: /proc/self/fd), or None where the system cannot say."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def read_bytes(path: str | Path) -> bytes:
    """A corpus file's bytes; a missing file or one that is not a regular file raises ParseError.

    The file is opened non-blocking and checked before reading: opening a FIFO
    named as a corpus file would otherwise wait forever for a writer. A
    `CorpusFile` is opened without following links and must be inside its corpus.
    """
    p = Path(path)
    root = getattr(path, "corpus_root", None)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    target = p
    if root is not None:
        flags |= getattr(os, "O_NOFOLLOW", 0)
        if p.is_symlink():  # listed as a link inside the corpus: its target is opened, itself not followed
            target = Path(os.path.realpath(p))
            if not target.is_relative_to(root):
                raise ParseError(f"{p}: symbolic link to a file outside the corpus directory; not read")
    try:
        fd = os.open(target, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ParseError(f"{p}: became a symbolic link after the corpus was listed; not read") from exc
        raise ParseError(f"{p}: cannot read file ({exc.strerror or exc})") from exc
    try:
        with os.fdopen(fd, "rb") as fh:
            if root is not None:
                real = _opened_path(fh.fileno())
                if real is not None and not Path(real).is_relative_to(root):
                    raise ParseError(f"{p}: opens a file outside the corpus directory; not read")
            kind = file_kind(os.fstat(fh.fileno()).st_mode)
            if kind != "regular file":
                raise ParseError(f"{p}: is {kind}, not a regular file")
            return fh.read()
    except OSError as exc:
        raise ParseError(f"{p}: cannot read file ({exc.strerror or exc})") from exc


def read_text(path: str | Path) -> str:
    """Read a corpus file (`read_bytes`) and decode it with `decode_bytes`."""
    return decode_bytes(read_bytes(path), str(Path(path)))


def file_kind(mode: int) -> str:
    """What an ``st_mode`` is, in words: "regular file", "directory", "a FIFO (named pipe)", ..."""
    if stat.S_ISREG(mode):
        return "regular file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def clean_inline(text: str) -> str:
    """Collapse runs of spaces/tabs and strip; keeps newlines."""
    text = text.replace("\u00a0", " ").replace("\u200b", "")
    return "\n".join(re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n")).strip()


# C0 controls but tab and newline, DEL, and the C1 controls (U+0080-U+009F: 0x9B is a one-character CSI).
_CONTROLS = dict.fromkeys([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0)])
# The colour codes digest_rag's own display writes (SGR: ESC [ digits ; m); nothing else of ESC's kind.
_SGR_RE = re.compile(r"\x1b\[[0-9;]{0,32}m")


def strip_controls(text: str, *, keep_colors: bool = False) -> str:
    """``text`` without C0/C1 control characters except newline and tab: what may reach a terminal.

    Titles, tags, snippets and file names come from untrusted files; an ESC in them could set the window
    title (OSC 0), write the clipboard (OSC 52) or plant hyperlinks (OSC 8). Every output path (CLI,
    shell, info, build messages, MCP text) passes its text through here. ``keep_colors`` keeps SGR colour
    codes (bold, yellow) for output the display coloured after stripping its content: they move no cursor
    and write nothing outside the text.
    """
    if keep_colors and "\x1b" in text:
        parts = _SGR_RE.split(text)
        codes = _SGR_RE.findall(text)
        out = [parts[0].translate(_CONTROLS)]
        for code, part in zip(codes, parts[1:], strict=True):
            out.append(code)
            out.append(part.translate(_CONTROLS))
        return "".join(out)
    return text.translate(_CONTROLS)


def bundled_rows(name: str) -> Iterator[list[str]]:
    """The tab-separated columns of each line of the bundled data file ``digest_rag/data/<name>`` that is
    neither blank nor a ``#`` comment."""
    text = resources.files("digest_rag").joinpath("data", name).read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            yield line.split("\t")
