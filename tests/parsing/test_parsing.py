"""Tests of the parsing layer: seed digests, the ml-papers notes corpus, JSONL, encodings, skips."""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

from digest_rag.errors import CorpusError, ParseError  # noqa: E402
from digest_rag.models import Paper  # noqa: E402
from digest_rag.parsing import ParseResult, Skip, detect_format, parse_file, parse_paths  # noqa: E402
from digest_rag.parsing import blog, daily, jsonl, notes, weekly  # noqa: E402
from digest_rag.text import read_text  # noqa: E402

WEEKLY_TITLES = [
    "Many-shot Jailbreaking",
    "SWE-Agent",
    "Mixture-of-Depths: Dynamically allocating compute in transformer-based language models",
    "Long-context LLMs Struggle with Long In-context Learning",
    "Visualization-of-Thought Elicits Spatial Reasoning in Large Language Models",
    "The Unreasonable Ineffectiveness of the Deeper Layers",
    "JetMoE",
    "ReFT: Representation Finetuning for Language Models",
    "Advancing LLM Reasoning",
    "Training LLMs over Neurally Compressed Text",
]


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    path = ROOT / "corpus"
    if not path.is_dir():
        pytest.skip("seed corpus/ not present")
    return path


@pytest.fixture(scope="session")
def weekly_file(corpus_dir: Path) -> Path:
    return corpus_dir / "2024-04-weekly-top-papers-roundup.txt"


@pytest.fixture(scope="session")
def daily_0628(corpus_dir: Path) -> Path:
    return corpus_dir / "2024-06-28-daily-digest.txt"


@pytest.fixture(scope="session")
def daily_0213(corpus_dir: Path) -> Path:
    return corpus_dir / "2024-02-13-daily-digest.txt"


@pytest.fixture(scope="session")
def blog_file(corpus_dir: Path) -> Path:
    return corpus_dir / "2024-04-22-blog-llama-introduction.txt"


@pytest.fixture(scope="session")
def weekly_papers(weekly_file: Path) -> list[Paper]:
    return parse_file(weekly_file).papers


def _all_text(papers: list[Paper]) -> str:
    return "\n".join(s.text for p in papers for s in p.sections)


# --- weekly ---------------------------------------------------------------------------------


def test_weekly_titles_exact(weekly_papers: list[Paper]) -> None:
    assert [p.title for p in weekly_papers] == WEEKLY_TITLES


def test_weekly_metadata(weekly_papers: list[Paper], weekly_file: Path) -> None:
    by_title = {p.title: p for p in weekly_papers}
    assert by_title["JetMoE"].title_ko is None
    assert by_title["SWE-Agent"].title_ko is None
    assert by_title["Many-shot Jailbreaking"].title_ko == "다발성 탈옥"
    for p in weekly_papers:
        assert p.date == dt.date(2024, 4, 1)
        assert p.format == "weekly"
        assert p.source == str(weekly_file)
        assert p.urls, p.title
    assert "https://research.myshell.ai/jetmoe" in by_title["JetMoE"].urls


def test_weekly_sections(weekly_papers: list[Paper]) -> None:
    by_title = {p.title: p for p in weekly_papers}
    for p in weekly_papers:
        kinds = [(s.kind, s.language) for s in p.sections]
        assert kinds[:2] == [("summary", "ko"), ("summary", "en")], p.title
    mod = by_title["Mixture-of-Depths: Dynamically allocating compute in transformer-based language models"]
    assert [(s.kind, s.language) for s in mod.sections] == [
        ("summary", "ko"),
        ("summary", "en"),
        ("abstract", "ko"),
        ("abstract", "en"),
    ]
    assert mod.sections[3].text.startswith("Transformer-based language models spread FLOPs")
    jet = by_title["JetMoE"]
    kp = [s for s in jet.sections if s.kind == "key_points"]
    assert [s.language for s in kp] == ["ko", "en"]
    assert "academia-friendly" in kp[1].text
    assert not any(s.kind == "key_points" for s in by_title["SWE-Agent"].sections)


def test_weekly_intro_and_boilerplate_not_indexed(weekly_papers: list[Paper]) -> None:
    text = _all_text(weekly_papers)
    assert "이번 주에 선정된 논문들을 살펴보면" not in text
    assert "파이토치 한국 사용자 모임" not in text
    assert "이 글은 GPT 모델로 정리한 것으로" not in text
    assert not any("원문" == p.title or "PyTorchKR" in p.title for p in weekly_papers)


# --- daily ----------------------------------------------------------------------------------


def test_daily_counts_and_dates(daily_0628: Path, daily_0213: Path) -> None:
    a = parse_file(daily_0628).papers
    b = parse_file(daily_0213).papers
    assert len(a) == 6
    assert len(b) == 12
    assert {p.date for p in a} == {dt.date(2024, 6, 28)}
    assert {p.date for p in b} == {dt.date(2024, 2, 13)}


def test_daily_gemma(daily_0628: Path) -> None:
    papers = parse_file(daily_0628).papers
    gemma = papers[0]
    assert gemma.title == "Gemma 2: Improving Open Language Models at a Practical Size"
    assert gemma.tags == ["llm", "distillation"]
    assert gemma.authors == ["Gemma Team", "Google DeepMind"]
    assert [(s.kind, s.language) for s in gemma.sections] == [("abstract", "en"), ("commentary", "ko")]
    assert gemma.sections[0].text.startswith("In this work, we introduce Gemma 2")
    assert gemma.sections[0].text.endswith("We release all our models to the community.")
    assert "AI Studio" in gemma.sections[1].text
    # arXiv links in the commentary cite other papers: not this paper's id.
    assert gemma.id not in {"1804.03235", "2106.05237", "2306.13649"}
    assert gemma.id.startswith("gemma-2-")
    assert papers[1].authors[1] == "Rai (Michael Pokorny)"
    assert papers[-1].tags == ["long-context"]


def test_daily_all_papers_well_formed(daily_0628: Path, daily_0213: Path) -> None:
    for path in (daily_0628, daily_0213):
        for p in parse_file(path).papers:
            assert p.authors and p.tags, p.title
            langs = {s.kind: s.language for s in p.sections}
            assert langs["abstract"] == "en", p.title
            assert langs["commentary"] in ("ko", "mixed"), p.title


def test_daily_odd_abstract_lines(daily_0213: Path) -> None:
    papers = {p.title: p for p in parse_file(daily_0213).papers}
    pink = papers["Suppressing Pink Elephants with Direct Principle Feedback"]
    abstract = pink.sections[0].text
    assert "Grey Elephant''" in abstract and "Pink Elephant Problem" in abstract
    assert pink.sections[1].text.startswith("코끼리는 생각하지 마")
    r3 = papers["Training Large Language Models for Reasoning through Reverse Curriculum Reinforcement Learning"]
    assert "R$^3$" in r3.sections[0].text


# --- blog -----------------------------------------------------------------------------------


def test_blog(blog_file: Path) -> None:
    papers = parse_file(blog_file).papers
    assert len(papers) == 1
    p = papers[0]
    assert p.title == "LLaMA: Open and Efficient Foundation Language Models"
    assert p.date == dt.date(2024, 4, 22)
    assert p.authors == ["성지코딩"]
    text = _all_text(papers)
    for chrome in ("get_dummies", "카테고리의 다른 글", "SJ_Koding", "| (0) |", "일 | 월", "백준"):
        assert chrome not in text, chrome
    lines = text.split("\n")
    assert "- Today" not in lines and "- Total" not in lines
    assert "Large Languages Models (LLMs) trained on massive corpora" in text
    assert "해당 논문을 보면서 LLM 연구의 큰 흐름을" in text  # body glued to the byline is kept
    assert "5. 데이터는 누구나 접근가능한 public데이터를 활용했다." in text
    assert {s.language for s in p.sections} >= {"en"}
    assert len(p.sections) == 2


# --- corpus walking -------------------------------------------------------------------------


def test_parse_paths_seed_corpus(corpus_dir: Path) -> None:
    result = parse_paths([corpus_dir])
    assert isinstance(result, ParseResult)
    assert len(result.papers) == 29
    assert result.skipped == []
    assert result.merged == []
    assert sorted(set(result.files.values())) == ["blog", "daily", "weekly"]
    assert all(p.source.startswith(str(corpus_dir)) for p in result.papers)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("2024-04-weekly-top-papers-roundup.txt", "weekly"),
        ("2024-06-28-daily-digest.txt", "daily"),
        ("2024-02-13-daily-digest.txt", "daily"),
        ("2024-04-22-blog-llama-introduction.txt", "blog"),
    ],
)
def test_detect_seed_formats(corpus_dir: Path, name: str, fmt: str) -> None:
    path = corpus_dir / name
    assert detect_format(read_text(path), str(path)) == fmt


def test_detect_extensions_and_unknown() -> None:
    assert detect_format('{"title": "x"}', "a.jsonl") == "jsonl"
    assert detect_format("https://arxiv.org/abs/2301.00001\n\nsome note", "a.md") == "notes"
    with pytest.raises(ParseError, match="unknown format"):
        detect_format("just some words\nand more words", "a.txt")


def test_cp949_copy_parses_identically(daily_0628: Path, tmp_path: Path) -> None:
    # Some author names use letters CP949 lacks; fold them to ASCII in both copies.
    text = read_text(daily_0628)
    text = "".join(c if c.encode("cp949", "ignore") else unicodedata.normalize("NFKD", c)[:1] for c in text)
    text = "".join(c for c in text if c.encode("cp949", "ignore"))
    utf8 = tmp_path / "utf8.txt"
    legacy = tmp_path / "cp949.txt"
    utf8.write_bytes(text.encode("utf-8"))
    legacy.write_bytes(text.encode("cp949"))
    a = parse_file(utf8).papers
    b = parse_file(legacy).papers
    assert len(b) == 6
    strip = lambda ps: [p.model_dump(exclude={"source"}) for p in ps]  # noqa: E731
    assert strip(a) == strip(b)


def test_binary_empty_and_strict(tmp_path: Path, daily_0628: Path) -> None:
    (tmp_path / "good.txt").write_text(read_text(daily_0628), encoding="utf-8")
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01\x02PNG\x00" * 50)
    (tmp_path / "empty.md").write_text("", encoding="utf-8")
    (tmp_path / "README.md").write_text("# not a note", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("ignored", encoding="utf-8")
    (tmp_path / "random.txt").write_text("hello world\nnothing here", encoding="utf-8")
    result = parse_paths([tmp_path])
    assert len(result.papers) == 6
    reasons = {Path(s.source).name: s.reason for s in result.skipped}
    assert set(reasons) == {"blob.txt", "empty.md", "random.txt"}
    assert "binary" in reasons["blob.txt"]
    assert "empty" in reasons["empty.md"]
    assert "unknown format" in reasons["random.txt"]
    assert all(isinstance(s, Skip) and s.reason and "\n" not in s.reason for s in result.skipped)
    with pytest.raises(CorpusError, match="blob.txt"):
        parse_paths([tmp_path], strict=True)


def test_missing_path_is_skipped(tmp_path: Path) -> None:
    result = parse_paths([tmp_path / "nope.txt"])
    assert result.papers == [] and result.skipped[0].reason == "no such file or directory"


def test_duplicates_merged(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "230101 X.md").write_text(
        "https://arxiv.org/abs/2301.00001\n\nPaper X (Alice, Bob)\n\n첫 번째 노트입니다.\n\n#one\n", encoding="utf-8"
    )
    (tmp_path / "b" / "230102 X again.md").write_text(
        "https://arxiv.org/abs/2301.00001\n\nPaper X (Alice, Bob)\n\n두 번째 노트입니다.\n\n#two\n", encoding="utf-8"
    )
    result = parse_paths([tmp_path])
    assert len(result.papers) == 1
    p = result.papers[0]
    assert p.id == "2301.00001"
    assert p.date == dt.date(2023, 1, 1)
    assert p.tags == ["one", "two"]
    assert [s.text for s in p.sections] == ["첫 번째 노트입니다.", "두 번째 노트입니다."]
    assert len(result.merged) == 1 and "2301.00001" in result.merged[0]


# --- notes ----------------------------------------------------------------------------------


def test_notes_variants() -> None:
    p = notes.parse(
        "https://arxiv.org/abs/1906.08237 새로운 프리트레이닝 알고리즘.\n\n#pretraining #language_model\n",
        "papers/2019/190620 XLNet.md",
    )[0]
    assert (p.title, p.id, p.date, p.tags) == ("XLNet", "1906.08237", dt.date(2019, 6, 20), ["pretraining", "language_model"])
    assert p.sections[0].text == "새로운 프리트레이닝 알고리즘."
    wrapped = notes.parse(
        "https://arxiv.org/abs/1912.13318\n\nLayoutLM: Pre-training of Text and Layout for Document Image\n"
        "Understanding (Yiheng Xu, Minghao Li)\n\nLayoutLM 업데이트.\n\n#ocr\n",
        "papers/2019/191231 LayoutLM.md",
    )[0]
    assert wrapped.title == "LayoutLM: Pre-training of Text and Layout for Document Image Understanding"
    assert wrapped.authors == ["Yiheng Xu", "Minghao Li"]
    assert wrapped.sections[0].text == "LayoutLM 업데이트."
    review = notes.parse("# 191210 최근 논문들에 대한 생각\n\n본문 https://arxiv.org/abs/1912.04260\n", "reviews/191210 Thoughts on recent papers.md")[0]
    assert (review.title, review.title_ko, review.date) == ("Thoughts on recent papers", "최근 논문들에 대한 생각", dt.date(2019, 12, 10))
    assert review.id != "1912.04260"  # a review cites many papers; a link is not its identity
    with pytest.raises(ParseError):
        notes.parse("   \n\n", "papers/2023/230101 Empty.md")
    with pytest.raises(ParseError):
        notes.parse("https://www.youtube.com/watch?v=x\n", "papers/2023/230306.md")


def test_notes_title_line_with_a_url_keeps_the_url_out_of_the_title() -> None:
    """Issue 22 item 6: "200129 LM Pretraining.md" in ml-papers got the title `SpanBERT https://arxiv.org/abs/...`."""
    one = notes.parse("BlendMask https://arxiv.org/abs/2001.00309\nFCOS 저자가 만든 모델.\n\n#instance_segmentation\n",
                      "papers/2020/200103 BlendMask.md")[0]
    assert (one.title, one.id) == ("BlendMask", "2001.00309")
    assert one.sections[0].text == "FCOS 저자가 만든 모델."
    listed = notes.parse("SpanBERT https://arxiv.org/abs/1907.10529\nALBERT https://arxiv.org/abs/1909.11942\n"
                         "XLNet https://arxiv.org/abs/1906.08237\n\n#pretraining #nlp\n", "papers/2020/200129 LM Pretraining.md")[0]
    assert listed.title == "LM Pretraining" and "SpanBERT" in listed.sections[0].text
    links = notes.parse("NUQMM https://arxiv.org/pdf/2206.09557.pdf\nhttps://arxiv.org/pdf/1706.02021.pdf\n\n양자화 정리.\n",
                        "papers/2023/230406 Quantization.md")[0]
    assert links.title == "Quantization"
    authors = notes.parse("Some Paper (Ann Lee, Bo Kim) https://arxiv.org/abs/2001.00001\n코멘트.\n", "papers/2020/200101 X.md")[0]
    assert (authors.title, authors.authors) == ("Some Paper", ["Ann Lee", "Bo Kim"])


def test_ml_papers_corpus(ml_papers_dir: Path) -> None:
    files = sorted(
        f for f in ml_papers_dir.rglob("*.md") if not any(part.startswith(".") for part in f.relative_to(ml_papers_dir).parts)
    )
    result = parse_paths([ml_papers_dir])
    assert result.files.keys() | {s.source for s in result.skipped} == {str(f) for f in files}
    assert len(result.files) + len(result.skipped) == len(files)
    # Every parsed file produced one paper; duplicates were merged into an earlier one.
    assert len(result.papers) + len(result.merged) == len(result.files)
    assert all(s.reason.strip() for s in result.skipped)
    for p in result.papers:
        assert p.title.strip() and "://" not in p.title, p.source
        assert p.sections and all(s.text.strip() for s in p.sections), p.source
        assert p.format == "notes"
    print(f"\nml-papers: files={len(files)} papers={len(result.papers)} skips={len(result.skipped)} merged={len(result.merged)}")


# --- jsonl ----------------------------------------------------------------------------------


def test_jsonl(tmp_path: Path) -> None:
    records = [
        {
            "title": "Attention Is All You Need",
            "title_ko": "어텐션이 전부다",
            "authors": "Ashish Vaswani, Noam Shazeer",
            "date": "2017-06-12",
            "url": "https://arxiv.org/abs/1706.03762",
            "tags": "#transformer #attention",
            "abstract_en": "The dominant sequence transduction models are based on recurrent networks.",
            "summary_ko": "순환 신경망 없이 어텐션만으로 번역 모델을 만든 논문입니다.",
        },
        {"title": "A Note", "tags": ["x", "#y"], "body": "그냥 본문입니다.", "id": "custom-id"},
    ]
    path = tmp_path / "papers.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n", encoding="utf-8")
    result = parse_file(path)
    a, b = result.papers
    assert a.id == "1706.03762" and a.authors == ["Ashish Vaswani", "Noam Shazeer"]
    assert a.tags == ["transformer", "attention"] and a.date == dt.date(2017, 6, 12)
    assert [(s.kind, s.language) for s in a.sections] == [("abstract", "en"), ("summary", "ko")]
    assert b.id == "custom-id" and b.tags == ["x", "y"] and b.sections[0].language == "ko"
    assert result.files == {str(path): "jsonl"}


def test_jsonl_bad_lines(tmp_path: Path) -> None:
    good = json.dumps({"title": "ok"})
    with pytest.raises(ParseError, match="line 2"):
        jsonl.parse(f"{good}\n{{not json\n", "x.jsonl")
    with pytest.raises(ParseError, match="line 3: missing or empty 'title'"):
        jsonl.parse(f"{good}\n\n{json.dumps({'authors': 'a'})}\n", "x.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(f"{good}\n[1, 2]\n", encoding="utf-8")
    result = parse_paths([bad])
    assert result.papers == [] and "line 2" in result.skipped[0].reason


# --- robustness -----------------------------------------------------------------------------


@pytest.mark.parametrize("module", [weekly, daily, blog, notes, jsonl])
@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "논문 소개", "x\n논문 소개\n", "(a)\n(b)\n#t", "a 본문\n", "# \n====\n", "{\"title\": 1}", "\x00\ufeff((((", "2024년 13월 40일\nT\n(A)\n"],
)
def test_parsers_raise_only_parse_error(module: object, text: str) -> None:
    score = getattr(module, "score")(text)
    assert 0.0 <= score <= 1.0
    try:
        papers = getattr(module, "parse")(text, "papers/2023/230101 Fuzz.md")
    except ParseError:
        return
    assert all(isinstance(p, Paper) for p in papers)


def test_a_fifo_named_on_the_command_line_is_reported_as_one(tmp_path: Path, seed_corpus: Path) -> None:
    """Issue 16 item 7: a FIFO was reported as "no such file or directory" (and parse_file would block on it)."""
    import os

    from typer.testing import CliRunner

    from digest_rag.frontends.cli import app

    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    (tmp_path / "link.txt").symlink_to(tmp_path / "gone.txt")
    res = parse_paths([fifo, tmp_path / "link.txt", tmp_path / "missing.txt"])
    assert [s.reason for s in res.skipped] == [
        "a FIFO (named pipe), not a regular file", "dangling symbolic link", "no such file or directory"]
    with pytest.raises(ParseError, match="FIFO"):
        parse_file(fifo)  # returns at once: opened non-blocking, refused before reading
    out = CliRunner().invoke(app, ["build", str(seed_corpus), str(fifo), "--index", str(tmp_path / "ix"),
                                   "--lexical-only"])
    assert out.exit_code == 0 and "pipe.txt: a FIFO (named pipe), not a regular file" in out.stdout, out.output


def test_a_link_out_of_the_corpus_directory_is_skipped(tmp_path: Path, seed_corpus: Path) -> None:
    """Threat model: a hostile corpus directory cannot make a build read (and index) a file elsewhere."""
    import shutil

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    daily = "2024-06-28-daily-digest.txt"
    shutil.copy(seed_corpus / daily, corpus / daily)
    outside = tmp_path / "private"
    outside.mkdir()
    shutil.copy(seed_corpus / "2024-02-13-daily-digest.txt", outside / "secret.txt")
    (corpus / "a-link.txt").symlink_to(outside / "secret.txt")
    (corpus / "same.txt").symlink_to(corpus / daily)  # inside: fine (merged with its target)
    (corpus / "dir-link").symlink_to(outside, target_is_directory=True)
    res = parse_paths([corpus])
    assert [(Path(s.source).name, s.reason) for s in res.skipped] == [
        ("a-link.txt", "symbolic link to a file outside the corpus directory")]
    assert set(res.files) == {str(corpus / daily), str(corpus / "same.txt")}
    assert parse_paths([corpus / "a-link.txt"]).papers  # named explicitly: the user's choice
