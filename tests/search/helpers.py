"""Small builders the search tests share."""

from __future__ import annotations

from digest_rag.models import Chunk


def make_chunk(cid: int, pid: str, lang: str, text: str, kind: str = "commentary") -> Chunk:
    """A chunk of paper ``pid``: the whole ``text`` of section 0."""
    return Chunk(id=cid, paper_id=pid, section_index=0, section_kind=kind, language=lang, text=text, start=0,
                 end=len(text))
