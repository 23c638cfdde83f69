""""More like this": a paper's own text made into a question that finds its neighbours.

`DigestIndex.similar` asks the index with the text this module builds from a paper (its titles, then
its sections in order, cut on a word boundary) through the ordinary retrievers, and leaves the paper
itself out of the answer. The text is what a reader would paste as a question, so every mode works
the same way: BM25 weighs the paper's rarer words, E5 embeds its opening as a query.

    >>> from digest_rag.models import Paper, Section
    >>> similar_text(Paper(id="x", title="Gemma 2", title_ko="젬마 2",
    ...                    sections=[Section(kind="summary", language="ko", text="지식 증류로 학습")]))
    'Gemma 2\\n젬마 2\\n지식 증류로 학습'
"""

from __future__ import annotations

from digest_rag.models import Paper

__all__ = ["SIMILAR_QUERY_CHARS", "similar_text"]

SIMILAR_QUERY_CHARS = 1_000
"""How much of a paper's text becomes the question: its titles and opening, which say what it is about.
More would add words from its details (and time to every retriever) without finding better neighbours."""


def similar_text(paper: Paper, limit: int = SIMILAR_QUERY_CHARS) -> str:
    """The titles and sections of ``paper``, one per line, cut at ``limit`` characters on a space."""
    parts = [paper.title]
    if paper.title_ko and paper.title_ko != paper.title:
        parts.append(paper.title_ko)
    parts += [" ".join(s.text.split()) for s in paper.sections if s.text.strip()]
    text = "\n".join(parts)
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return cut[:space] if space > limit // 2 else cut
