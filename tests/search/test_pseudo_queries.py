"""search/pseudo_queries.py: the pseudo-queries fusion calibration asks, drawn from an index's own corpus."""

from __future__ import annotations

import json
from pathlib import Path

from digest_rag.search.pseudo_queries import (
    PseudoQuerySampler,
    korean_sentence,
    without_sentence,
)
from tests.search.helpers import make_chunk as _chunk


def test_korean_sentence_wants_a_hangul_sentence() -> None:
    text = "Short. 이 논문은 긴 컨텍스트를 악용하는 탈옥 공격을 처음으로 체계적으로 분석한다. An English sentence that is long enough."
    assert korean_sentence(text, "x") == "이 논문은 긴 컨텍스트를 악용하는 탈옥 공격을 처음으로 체계적으로 분석한다."
    assert korean_sentence("Only English words in this sentence, nothing else here.", "x") is None


def test_sampler_draws_note_and_english_queries_and_is_bounded() -> None:
    ko = "이 논문은 긴 컨텍스트를 악용하는 탈옥 공격을 처음으로 체계적으로 분석한다."
    chunks = []
    for n in range(50):
        chunks += [_chunk(10 * n, f"p{n}", "ko", ko), _chunk(10 * n + 1, f"p{n}", "en", "An English abstract."),
                   _chunk(10 * n + 2, f"p{n}", "mixed", "Title / 제목", kind="title")]
    sampler = PseudoQuerySampler(limit=10)
    sampler.add(chunks[:60])
    sampler.add(chunks[60:])
    queries = sampler.queries()
    assert len({q.paper_id for q in queries}) == 10
    for q in queries:
        n = int(q.paper_id[1:])
        if q.kind == "note":  # the sentence was all its chunk held: no stand-in, the English chunk answers
            assert q.excluded == {10 * n} and q.doc == ""
        else:  # the paper as an English-only paper: every chunk out, a stand-in of its English text
            assert q.kind == "english" and q.excluded == {10 * n, 10 * n + 1, 10 * n + 2}
            assert q.doc == "An English abstract."
    assert sampler.papers == 50 and sampler.english_share == 0.0
    again = PseudoQuerySampler(limit=10)
    again.add(list(reversed(chunks)))
    assert again.queries() == queries  # the same papers whatever the order they come in


def test_a_note_sentence_leaves_a_stand_in_and_a_given_sentence_is_asked() -> None:
    first = "트랜스포머의 어텐션 비용을 줄이는 희소 어텐션 방법을 제안한다."
    second = "긴 문서에서도 정확도가 거의 떨어지지 않는다는 것을 보인다."
    chunks = [_chunk(1, "p1", "ko", f"{first}\n{second}"), _chunk(2, "p1", "mixed", "Sparse / 희소", kind="title")]
    text = korean_sentence(chunks[0].text, "p1")
    assert text in (first, second)
    sampler = PseudoQuerySampler()
    sampler.add(chunks)
    note, english = sampler.queries()
    # One text chunk only: the rest of it (the other sentence) stands in for it, so the paper can be found.
    assert note.kind == "note" and note.text == text and note.doc == without_sentence(chunks[0].text, text)
    assert note.doc == (second if text == first else first) and english.doc == ""
    assert without_sentence("가. 나다.", "없는 문장") == "가. 나다."
    # The sentence a trained model's report names is the one asked (see trained_sentences).
    given = PseudoQuerySampler(sentences={"p1": second})
    given.add(chunks)
    assert {q.text for q in given.queries()} == {second}
    missing = PseudoQuerySampler(sentences={"p1": "이 문장은 어디에도 없는 문장이라서 질문이 될 수 없다."})
    missing.add(chunks)
    assert missing.queries() == []


def test_a_trained_model_is_calibrated_on_the_papers_its_training_held_out(tmp_path: Path) -> None:
    """A model `digest-rag train` made has learnt its training papers' own text: their sentences would flatter
    it, so only the papers its report says were held out give pseudo-queries."""
    from digest_rag.evaluation.evaluate import stable_bucket
    from digest_rag.search.pseudo_queries import (
        TRAIN_REPORT,
        trained_heldout,
        trained_sentences,
    )

    assert trained_heldout(None) is None and trained_heldout(str(tmp_path)) is None
    (tmp_path / TRAIN_REPORT).write_text(json.dumps({"heldout_paper_ids": ["p3", "p7"]}), encoding="utf-8")
    keep = trained_heldout(str(tmp_path))
    assert keep is not None and keep("p3") and not keep("p4")
    # Papers a sentence of which the training left out are asked that sentence.
    report = {"heldout_paper_ids": ["p3"], "heldout_sentences": {"p7": "문장", "p9": 3}}
    (tmp_path / TRAIN_REPORT).write_text(json.dumps(report), encoding="utf-8")
    keep = trained_heldout(str(tmp_path))
    assert keep is not None and keep("p3") and keep("p7") and not keep("p9") and not keep("p4")
    assert trained_sentences(str(tmp_path)) == {"p7": "문장"} and trained_sentences(None) == {}
    (tmp_path / TRAIN_REPORT).write_text(json.dumps({"heldout_paper_ids": ["p3", "p7"]}), encoding="utf-8")
    ko = "이 논문은 긴 컨텍스트를 악용하는 탈옥 공격을 처음으로 체계적으로 분석한다."
    chunks = [c for n in range(20) for c in (_chunk(10 * n, f"p{n}", "ko", ko), _chunk(10 * n + 1, f"p{n}", "en", "An abstract."))]
    sampler = PseudoQuerySampler(keep=keep)
    sampler.add(chunks)
    assert {q.paper_id for q in sampler.queries()} == {"p3", "p7"}
    # A report without the ids: the split rule of its held-out share.
    (tmp_path / TRAIN_REPORT).write_text(json.dumps({"options": {"heldout_share": 0.1}}), encoding="utf-8")
    keep = trained_heldout(str(tmp_path))
    assert keep is not None
    assert [keep(f"p{n}") for n in range(50)] == [stable_bucket(f"p{n}", 10, "train-heldout") == 0 for n in range(50)]
    for bad in ("[1, 2", "[]", json.dumps({"options": {"heldout_share": 0.9}})):
        (tmp_path / TRAIN_REPORT).write_text(bad, encoding="utf-8")
        assert trained_heldout(str(tmp_path)) is None
