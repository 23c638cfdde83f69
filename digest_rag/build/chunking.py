"""Sentence-aligned, token-bounded chunks.

Every chunk is embedded as ``passage_prefix + title_line + "\\n" + chunk_text``
(the title line only when ``ChunkerSettings.title_in_passage``). The title
travels with each chunk because a lone chunk of Korean commentary ("이 논문은
…") rarely names the paper, and E5 was trained on "title + passage" inputs.
The budget therefore subtracts prefix and title tokens before cutting the text,
so the full passage never exceeds the model's max sequence length.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from digest_rag.models import PASSAGE_PREFIX, Chunk, ChunkerSettings, Paper
from digest_rag.text import SENTENCE_END, detect_language, stable_int64

TokenCounter = Callable[[str], int]

_WORD = re.compile(r"\S+\s*")


def approx_token_count(text: str) -> int:
    """Conservative token estimate for when no tokenizer is at hand (lexical-only builds).

    XLM-R's sentencepiece spends about one token per Hangul syllable pair and
    one per ~3.5 Latin characters; counting every non-ASCII character as a
    token and ASCII at one per three characters over-estimates both.
    """
    non_ascii = sum(1 for c in text if ord(c) > 127 and not c.isspace())
    ascii_chars = sum(1 for c in text if ord(c) <= 127 and not c.isspace())
    return non_ascii + (ascii_chars + 2) // 3 + 2


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (whitespace trimmed, none empty)."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in SENTENCE_END.finditer(text):
        _append_span(text, pos, m.start(), spans)
        pos = m.end()
    _append_span(text, pos, len(text), spans)
    return spans


def _append_span(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    seg = text[start:end]
    stripped = seg.strip()
    if not stripped:
        return
    lead = len(seg) - len(seg.lstrip())
    spans.append((start + lead, start + lead + len(stripped)))


def _split_long(text: str, start: int, end: int, budget: int, count: TokenCounter) -> list[tuple[int, int]]:
    """Cut one over-long sentence at word boundaries (or characters, for unbroken runs)."""
    pieces: list[tuple[int, int]] = []
    cur_start = start
    cur_end = start
    for m in _WORD.finditer(text, start, end):
        w_end = min(m.end(), end)
        if count(text[cur_start:w_end].strip()) <= budget:
            cur_end = w_end
            continue
        if cur_end > cur_start:
            pieces.append((cur_start, cur_end))
            cur_start = m.start()
        # A single "word" longer than the budget (URLs, long Hangul runs): cut by characters.
        while count(text[cur_start:w_end].strip()) > budget:
            lo, hi = cur_start + 1, w_end
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if count(text[cur_start:mid]) <= budget:
                    lo = mid
                else:
                    hi = mid - 1
            pieces.append((cur_start, lo))
            cur_start = lo
        cur_end = w_end
    if cur_end > cur_start and text[cur_start:cur_end].strip():
        pieces.append((cur_start, cur_end))
    return [(s + (len(text[s:e]) - len(text[s:e].lstrip())), e - (len(text[s:e]) - len(text[s:e].rstrip()))) for s, e in pieces if text[s:e].strip()]


def title_line(paper: Paper) -> str:
    """The line that precedes every passage of a paper: English title, then Korean title."""
    return paper.display_title


def passage_text(paper: Paper, chunk_text: str, settings: ChunkerSettings, kind: str = "") -> str:
    """The text embedded for a chunk (without the model prefix)."""
    if settings.title_in_passage and kind != "title":
        return f"{title_line(paper)}\n{chunk_text}"
    return chunk_text


def chunk_paper(
    paper: Paper,
    settings: ChunkerSettings | None = None,
    count_tokens: TokenCounter | None = None,
    passage_prefix: str = PASSAGE_PREFIX,
) -> list[Chunk]:
    """Cut every section of ``paper`` into chunks that respect sentence boundaries.

    Chunks aim at ``target_tokens`` and repeat up to ``overlap_tokens`` of the
    previous chunk's closing sentences. No chunk's full passage (prefix, title
    line, text) exceeds ``max_tokens``; a sentence longer than the budget is
    cut at word boundaries.
    """
    settings = settings or ChunkerSettings()
    count = count_tokens or approx_token_count
    overhead = count(passage_prefix) + (count(title_line(paper) + "\n") if settings.title_in_passage else 0)
    # Two tokens for <s> and </s>; a small margin because tokenisation is not additive at joins.
    hard = settings.max_tokens - overhead - 2 - 4
    if hard < 16:
        # Absurdly long titles: drop the title from the budget rather than produce nothing.
        hard = max(16, settings.max_tokens - count(passage_prefix) - 6)
    target = min(settings.target_tokens, hard)
    chunks: list[Chunk] = []
    if settings.title_chunk:
        # A passage of the titles alone: "find the paper called X" questions (in either language)
        # match it far better than a title diluted by a long chunk. Embedded, not BM25-indexed,
        # since the lexical side already weights titles into every chunk.
        title = title_line(paper)
        if count(passage_prefix + title) + 2 > settings.max_tokens:
            # Longest prefix of the title that fits (a cut by characters alone overshoots for Hangul).
            lo, hi = 1, len(title)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if count(passage_prefix + title[:mid]) + 2 <= settings.max_tokens:
                    lo = mid
                else:
                    hi = mid - 1
            title = title[:lo]
        chunks.append(
            Chunk(
                id=stable_int64(paper.id, "title"),
                paper_id=paper.id,
                section_index=-1,
                section_kind="title",
                language=detect_language(title),
                text=title,
                start=0,
                end=len(title),
            )
        )
    for s_idx, section in enumerate(paper.sections):
        text = section.text
        units: list[tuple[int, int]] = []
        sizes: list[int] = []  # each unit's tokens, counted once (the tokenizer is most of a model build's chunking)
        for s, e in split_sentences(text):
            size = count(text[s:e])
            if size > hard:
                pieces = _split_long(text, s, e, hard, count)
                units.extend(pieces)
                sizes.extend(count(text[a:b]) for a, b in pieces)
            else:
                units.append((s, e))
                sizes.append(size)
        for c_idx, (start, end) in enumerate(_pack(text, units, target, hard, settings.overlap_tokens, count,
                                                   sizes)):
            body = text[start:end]
            chunks.append(
                Chunk(
                    id=stable_int64(paper.id, s_idx, c_idx),
                    paper_id=paper.id,
                    section_index=s_idx,
                    section_kind=section.kind,
                    language=section.language,
                    text=body,
                    start=start,
                    end=end,
                )
            )
    return chunks


def _pack(
    text: str,
    units: Sequence[tuple[int, int]],
    target: int,
    hard: int,
    overlap: int,
    count: TokenCounter,
    sizes: Sequence[int],
) -> list[tuple[int, int]]:
    """Greedily group sentence spans into chunk spans, with sentence-level overlap.

    Sums of per-sentence counts (``sizes``, one per unit, counted once by the caller) steer the packing (one
    tokenizer call per sentence, not per candidate chunk); each finished chunk is then counted for real and
    shrunk if joins cost more tokens than the parts.
    """
    out: list[tuple[int, int]] = []
    i = 0
    n = len(units)
    while i < n:
        j = i
        total = sizes[i]
        while j + 1 < n and total + sizes[j + 1] <= target:
            j += 1
            total += sizes[j]
        while j > i and count(text[units[i][0] : units[j][1]]) > hard:
            j -= 1
        out.append((units[i][0], units[j][1]))
        if j + 1 >= n:
            break
        # Step back over closing sentences worth at most `overlap` tokens, but always advance.
        k = j + 1
        back = 0
        while overlap and k - 1 > i and back + sizes[k - 1] <= overlap:
            k -= 1
            back += sizes[k]
        i = k
    return out


def chunk_papers(
    papers: Sequence[Paper],
    settings: ChunkerSettings | None = None,
    count_tokens: TokenCounter | None = None,
    passage_prefix: str = PASSAGE_PREFIX,
) -> list[Chunk]:
    """`chunk_paper` over many papers, in order."""
    out: list[Chunk] = []
    for paper in papers:
        out.extend(chunk_paper(paper, settings, count_tokens, passage_prefix))
    return out
