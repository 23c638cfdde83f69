"""The newer markdown-note style (issue 11): a fixture per variant, a never-lose-text property, ml-papers words."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest_rag.errors import ParseError
from digest_rag.models import Paper
from digest_rag.parsing import detect_format, parse_file, parse_paths
from digest_rag.parsing import notes

DATA = Path(__file__).resolve().parents[1] / "data" / "notes"


def _one(name: str) -> Paper:
    papers = parse_file(DATA / name).papers
    assert len(papers) == 1
    return papers[0]


def _kinds(p: Paper) -> list[tuple[str, str]]:
    return [(s.kind, s.language) for s in p.sections]


def _text(p: Paper, kind: str, language: str) -> str:
    (found,) = [s.text for s in p.sections if (s.kind, s.language) == (kind, language)]
    return found


def test_italic_title_authors_abstract_commentary_tags() -> None:
    p = _one("250110 Do Small Proxies Pick the Right Data.md")
    assert p.title == "Do Small Proxies Pick the Right Data? Revisiting Proxy-Model Practice"
    assert p.authors == ["Jane Doe", "Minsu Kim", "Alex Roe"]
    assert (p.id, p.date, p.tags, p.title_from_filename) == ("2501.01234", dt.date(2025, 1, 10), ["dataset", "scaling"], False)
    assert _kinds(p) == [("abstract", "en"), ("commentary", "ko")]
    assert _text(p, "abstract", "en") == (
        "Data teams routinely train small proxy models to choose pretraining data. "
        "We show that the ranking of data recipes flips when the proxy's learning rate is tuned."
    )
    assert _text(p, "commentary", "ko") == "프록시 모델의 학습률을 낮추는 것만으로 결론이 뒤집히는 경우가 줄어든다는 결과네요."
    assert p.urls == ["https://arxiv.org/abs/2501.01234"]


def test_wrapped_underscore_title_and_wrapped_authors() -> None:
    p = _one("250111 Wrapped Title.md")
    assert p.title == "Scaling Laws for Everything: When Does Bigger Stop Helping, and Why! A Study of Saturation"
    assert p.authors == ["Jane Doe", "Minsu Kim", "Alex Roe", "Bo Li"]
    assert _text(p, "abstract", "en") == "We study saturation."
    assert _text(p, "commentary", "ko") == "짧은 코멘트." and p.tags == ["scaling"]


def test_multi_paragraph_abstract_is_exactly_the_quote() -> None:
    p = _one("250112 Multi Paragraph Abstract.md")
    assert _text(p, "abstract", "en") == (
        "First paragraph of the abstract, with extra spaces.\n\n"
        "Second paragraph: it continues here\non a wrapped quote line.\n\n"
        "Third paragraph without a space after the marker."
    )
    ko = _text(p, "commentary", "ko")
    assert ko == "이 논문은 초록이 길군요. 두 번째 문단도 있습니다.\n\n두 번째 코멘트 문단입니다."
    assert "abstract" not in ko and ">" not in ko


def test_english_block_is_english_commentary() -> None:
    p = _one("250113 English Commentary.md")
    assert p.title == "Learning to Reason, Fast and Slow: A Gradient View"  # **bold** titles too
    assert _kinds(p) == [("abstract", "en"), ("commentary", "ko"), ("commentary", "en")]
    assert _text(p, "commentary", "en") == (
        "Gradient differences shrink when a detailed chain of thought is given. Interesting.\n\nA second English paragraph."
    )
    assert "<english>" not in " ".join(s.text for s in p.sections).lower()


def test_several_papers_in_one_note() -> None:
    papers = parse_file(DATA / "250114 Two Papers.md").papers
    assert [p.title for p in papers] == ["First Paper: Sparse Experts", "Second Paper? Dense Experts!", "Third Paper Without a Link"]
    assert [p.authors for p in papers] == [["Alice Kim"], ["Bob Lee", "Carol Park"], ["Dan Choi"]]
    assert [p.id for p in papers][:2] == ["2501.05555", "2501.06666"]
    assert [_text(p, "abstract", "en") for p in papers] == ["First abstract.", "Second abstract.", "Third abstract."]
    assert [_text(p, "commentary", "ko") for p in papers] == ["첫 번째 논문에 대한 코멘트.", "두 번째 논문에 대한 코멘트.", "세 번째 코멘트."]
    assert _kinds(papers[1])[-1] == ("commentary", "en") and ("commentary", "en") not in _kinds(papers[0])
    assert all(p.tags == ["moe", "efficiency"] for p in papers)  # one tag line at the end: every paper's
    assert papers[0].urls == ["https://arxiv.org/abs/2501.05555"]


def test_trailing_links_go_to_urls_not_commentary() -> None:
    p = _one("250115 Trailing Links.md")
    text = "\n".join(s.text for s in p.sections)
    assert "[[" not in text and "Links" not in text and "2402.03620" not in text
    assert _text(p, "commentary", "ko") == "결정적인 토큰이 있다는 발견. (https://arxiv.org/abs/2402.10200)"
    assert p.urls[0] == "https://arxiv.org/abs/2501.07777"
    assert "https://arxiv.org/abs/2402.03620" in p.urls
    assert "[[240215 Chain-of-Thought Reasoning Without Prompting.md]]" in p.urls and "[[240101 Other.md]]" in p.urls
    assert p.tags == ["reasoning"]


def test_no_title_line_takes_the_file_name_and_is_flagged() -> None:
    p = _one("250116 Can Small Training Runs Reliably Guide Data Curation.md")
    assert (p.title, p.date, p.title_from_filename) == ("Can Small Training Runs Reliably Guide Data Curation", dt.date(2025, 1, 16), True)
    assert _kinds(p) == [("abstract", "en"), ("commentary", "ko"), ("commentary", "en")]
    assert p.authors == []


def test_fixture_directory_and_txt_detection(tmp_path: Path) -> None:
    result = parse_paths([DATA])
    assert not result.skipped and len(result.papers) == 9
    assert set(result.files.values()) == {"notes"}
    text = (DATA / "250113 English Commentary.md").read_text(encoding="utf-8")
    assert detect_format(text, "note.txt") == "notes"


def test_old_style_notes_are_not_routed_to_the_newer_reader() -> None:
    old = "https://arxiv.org/abs/2301.03728\n\nScaling Laws (Armen Aghajanyan)\n\n_target_: torch.nn.ReLU 설정\n\n[[200619 DDPM]]\n\n#scaling\n"
    assert not notes.is_newer_note(old)
    p = notes.parse(old, "papers/2023/230110 Scaling.md")[0]
    assert p.sections[0].text == "_target_: torch.nn.ReLU 설정\n\n[[200619 DDPM]]" and not p.title_from_filename


def test_emphasis_in_commentary_is_not_a_title() -> None:
    text = "https://arxiv.org/abs/2501.1\n\n*Real Title* (A B)\n\n> Abs.\n\n*중요*: 코멘트.\n\n*Just Emphasis*\n\n코멘트 끝.\n"
    (p,) = notes.parse(text, "papers/250101 X.md")
    assert p.title == "Real Title" and "*Just Emphasis*" in _text(p, "commentary", "ko")


def test_authors_on_their_own_line_and_a_link_opening_the_note() -> None:
    for gap in ("\n", "\n\n"):
        text = f"https://arxiv.org/abs/2501.00001\n\n*A Title: Wrapped?*{gap}(Jane Doe, Bo Li)\n\n> Abs.\n\n코멘트.\n"
        (p,) = notes.parse(text, "papers/250101 X.md")
        assert (p.title, p.authors) == ("A Title: Wrapped?", ["Jane Doe", "Bo Li"])
    (p,) = notes.parse("https://arxiv.org/abs/2501.00002 링크 뒤 코멘트.\n\n> 인용.\n", "papers/250101 Linked.md")
    assert (p.id, p.title, p.title_from_filename) == ("2501.00002", "Linked", True)
    assert _text(p, "commentary", "ko") == "링크 뒤 코멘트."


def test_korean_translation_in_the_quote_gets_its_own_abstract_section() -> None:
    text = "*A Title* (Jane Doe)\n\n> The English abstract.\n>\n> 한국어로 번역한 초록입니다.\n\n코멘트.\n\n# 참고\n\n[[x]]\n"
    (p,) = notes.parse(text, "papers/250101 X.md")
    assert _kinds(p) == [("abstract", "en"), ("abstract", "ko"), ("commentary", "ko")]
    assert _text(p, "abstract", "en") == "The English abstract." and p.urls == ["[[x]]"]


def test_date_only_file_name_without_title_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        notes.parse("> An abstract only.\n\n코멘트.\n", "papers/250101.md")


# --- never lose text: hypothesis over generated notes mixing all six variants -----------------

_EN = ["Scaling", "Laws", "Proxy", "Models", "Data", "Curation", "Sparse", "Experts", "Reasoning", "Fast", "Slow", "Tokens"]
_KO = ["작은", "프록시", "모델의", "학습률을", "낮추는", "것만으로", "결론이", "뒤집히는", "결과네요.", "흥미롭군요."]
_NAMES = ["Jane Doe", "Minsu Kim", "Alex Roe", "Bo Li", "Ada Lovelace", "J. Zico Kolter"]
_SENT = ["We study this.", "Results improve by 5.3%.", "Code is public.", "It works on ImageNet 64x64.", "Why does it?"]
_EXCLUDED = set(",()[]")


def _chars(*texts: str) -> Counter[str]:
    return Counter(c for t in texts for c in t if not c.isspace() and c not in _EXCLUDED)


@st.composite
def _notes(draw: st.DrawFn) -> tuple[str, list[str], bool]:
    """(note text, its content pieces, whether the first paper has no title line)."""
    out: list[str] = []
    content: list[str] = []
    blank = st.sampled_from(["\n", "\n\n", "\n\n\n", "  \n\n"])
    n_papers = draw(st.integers(1, 3))
    untitled = draw(st.booleans())
    uid = 0
    for n in range(n_papers):
        has_url = draw(st.booleans()) or (n == 0 and untitled) or n > 0 and draw(st.booleans())
        if has_url:
            uid += 1
            url = f"https://arxiv.org/abs/2501.{n}{uid:04d}"
            out.append(url + draw(blank))
            content.append(url)
        if not (n == 0 and untitled):
            words = draw(st.lists(st.sampled_from(_EN), min_size=2, max_size=8))
            title = " ".join(words) + draw(st.sampled_from(["", "?", "!", ": A Study", "? Rethinking It"]))
            authors = draw(st.lists(st.sampled_from(_NAMES), min_size=0 if has_url else 1, max_size=4, unique=True))
            mark = draw(st.sampled_from(["*", "_", "**", ""]))  # "": an older-style plain title line
            if not mark and not (has_url and authors):
                mark = "*"  # a plain line is a title only under a link, with its authors
            if mark and draw(st.booleans()) and len(words) > 3:  # wrapped over two lines
                cut = len(title.split(" ")) // 2
                parts = title.split(" ")
                head = f"{mark}{' '.join(parts[:cut])}\n{' '.join(parts[cut:])}{mark}"
            else:
                head = f"{mark}{title}{mark}"
            # Authors on the title line, or (italic titles) on the next line, or after a blank line.
            sep = draw(st.sampled_from([" ", "\n", "\n\n"])) if mark else " "
            out.append(head + (f"{sep}({', '.join(authors)})" if authors else "") + draw(blank))
            content += [title, *authors]
        for _ in range(draw(st.integers(0 if n or not untitled else 1, 3))):
            para = " ".join(draw(st.lists(st.sampled_from(_SENT), min_size=1, max_size=3)))
            out.append(f"> {para}\n" + draw(st.sampled_from([">\n", "\n", ""])))
            content.append(para)
        if draw(st.integers(0, 4)) == 0:  # a Korean translation quoted under the abstract
            para = " ".join(draw(st.lists(st.sampled_from(_KO), min_size=2, max_size=6)))
            out.append(f">\n> {para}\n\n")
            content.append(para)
        for _ in range(draw(st.integers(0, 2))):
            para = " ".join(draw(st.lists(st.sampled_from(_KO), min_size=2, max_size=8)))
            out.append(para + draw(blank))
            content.append(para)
        if draw(st.booleans()):
            paras = draw(st.lists(st.sampled_from(_SENT), min_size=1, max_size=2))
            out.append("<english>\n" + "\n\n".join(paras) + "\n</english>" + draw(blank))
            content += paras
        if draw(st.booleans()):
            uid += 1
            tag = f"tag{uid}"
            out.append(f"#{tag}" + draw(blank))
            content.append(tag)
    if draw(st.booleans()):
        out.append("# Links" + draw(blank))
        for k in range(draw(st.integers(0, 2))):
            wl = f"2401{k:02d} Linked Note {k}.md"
            out.append(f"[[{wl}]]\n")
            content.append(wl)
        if draw(st.booleans()):
            url = "https://arxiv.org/abs/2402.99999"
            out.append(url + "\n")
            content.append(url)
    return "".join(out), content, untitled


def _output_chars(papers: list[Paper]) -> Counter[str]:
    texts: list[str] = []
    tags: dict[str, None] = {}
    for p in papers:
        if not p.title_from_filename:
            texts.append(p.title)
        texts += p.authors
        sections = [s.text for s in p.sections]
        texts += sections
        tags.update(dict.fromkeys(p.tags))  # a note's closing tag line is shared by its papers
        texts += [u for u in p.urls if not any(u in s for s in sections)]
    return _chars(*texts, *tags)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_notes())
def test_every_non_markup_character_lands_exactly_once(case: tuple[str, list[str], bool]) -> None:
    text, content, untitled = case
    papers = notes.parse(text, "papers/2025/250101 Generated Note.md")
    if notes.is_newer_note(text):
        assert _output_chars(papers) == _chars(*content)
    else:
        # Only plain title lines: an older-style note, whose reader repeats a lone title as its text.
        assert not _chars(*content) - _output_chars(papers)
    assert all("<english>" not in s.text and not s.text.startswith(">") for p in papers for s in p.sections)
    assert papers[0].title_from_filename == untitled


# --- never lose text: every ml-papers note -----------------------------------------------------

_WORD = re.compile(r"[^\W_]+")  # letters and digits: punctuation and markup around words do not count


def test_ml_papers_no_word_is_lost(ml_papers_dir: Path) -> None:
    lost: dict[str, list[str]] = {}
    files = sorted(ml_papers_dir.rglob("*.md"))
    for f in files:
        try:
            papers = parse_file(f).papers
        except ParseError:
            continue
        out = " ".join(
            [s.text for p in papers for s in p.sections]
            + [p.title for p in papers]
            + [p.title_ko or "" for p in papers]
            + [a for p in papers for a in p.authors]
            + [t for p in papers for t in p.tags]
            + [u for p in papers for u in p.urls]
        )
        have = set(_WORD.findall(out))
        text = f.read_text(encoding="utf-8")
        # A heading's "YYMMDD " prefix is a date (Paper.date, or the file name's date wins).
        have.update(re.findall(r"(?m)^#+\s+(\d{6})\s", text))
        gone = [w for w in _WORD.findall(text) if w not in have]
        if gone:
            lost[f.name] = gone[:5]
    assert not lost, f"{len(lost)} of {len(files)} notes lost words, e.g. {list(lost.items())[:5]}"
