"""`digest-rag shell`: load an index once, then ask questions one after another.

Lines starting with ``:`` change settings (``:mode lexical``, ``:k 5``,
``:lang en``, ``:from 2024-06-01``, ``:to``, ``:tag``), ``:open N`` prints paper
N of the last results whole, ``:help`` lists them all, ``:quit`` (or Ctrl-D)
leaves. Anything else is a question, answered in the format of ``search``.

On a terminal the prompt is prompt_toolkit's: line editing that knows
double-width Hangul, input composed by the terminal's IME, history across
sessions (``$DIGEST_RAG_CACHE/shell_history``) and suggestions from it. With
piped input it reads plain lines, so ``printf '탈옥\\n:open 1\\n' | digest-rag shell``
works in scripts. The index follows new generations written by build/update.
"""

from __future__ import annotations

import shlex
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from digest_rag.frontends.display import format_hits, format_paper
from digest_rag.errors import DigestRagError, UsageError
from digest_rag.index import DigestIndex
from digest_rag.lexical.kiwi import start_kiwi_in_background
from digest_rag.frontends.live import LiveIndex
from digest_rag.models import SearchResults
from digest_rag.frontends.service import SearchOptions, SearchRequest
from digest_rag.text import strip_controls

__all__ = ["HELP", "Shell", "run_shell"]

HELP = """\
질문을 입력하면 검색합니다 (Type a question to search). Commands:
  :mode hybrid|dense|lexical   search mode
  :k N                         number of papers (1..100)
  :lang ko|en|mixed|any        language of the matched text
  :from YYYY[-MM[-DD]]|-       only papers dated on or after (- clears)
  :to YYYY[-MM[-DD]]|-         only papers dated on or before (- clears)
  :tag TAG...|-                only papers with any of these tags (- clears)
  :author NAME...|-            only papers with an author whose name contains NAME (- clears)
  :min-score X|-               only hits scoring at least X (- clears)
  :open N                      print paper N of the last results whole
  :settings                    show the settings
  :help                        this list
  :quit                        leave (or Ctrl-D)"""

_CLEAR = ("-", "any", "none", "all", "")


class Shell:
    """The shell's logic without I/O: :meth:`handle` turns one input line into the text to print.

    ``live`` is the index (a :class:`LiveIndex`, refreshed before each
    question so that a rebuild is picked up). ``width`` and ``color`` are
    passed to :func:`~digest_rag.frontends.display.format_hits`.
    """

    def __init__(self, live: LiveIndex, *, width: int = 100, color: bool = False) -> None:
        self.live = live
        # A lexical-only index has no vectors: it starts in lexical mode, and :mode refuses the others.
        self.options = SearchOptions(mode="lexical") if self.lexical_only else SearchOptions()
        self.last: SearchResults | None = None
        self.width = width
        self.color = color
        self.done = False
        self._commands: dict[str, Callable[[list[str]], str]] = {
            "mode": self._mode, "k": self._k, "lang": self._lang, "from": self._from, "to": self._to,
            "tag": self._tag, "tags": self._tag, "author": self._author, "min-score": self._min_score, "open": self._open, "settings": self._settings,
            "help": self._help, "h": self._help, "?": self._help, "quit": self._quit, "q": self._quit,
            "exit": self._quit,
        }

    @property
    def lexical_only(self) -> bool:
        """Whether the index now answering has no embedding model (its info is computed once per generation)."""
        return self.live.info()["model"] is None

    # ---------------------------------------------------------------- commands
    def _one(self, args: list[str], name: str, usage: str) -> str:
        if len(args) != 1:
            raise UsageError(f":{name} takes one value: {usage}")
        return args[0]

    def _set(self, **values: object) -> str:
        self.options = self.options.changed(**values)
        return self._settings([])

    def _mode(self, args: list[str]) -> str:
        mode = self._one(args, "mode", ":mode hybrid|dense|lexical")
        if self.lexical_only and mode in ("dense", "hybrid"):
            raise UsageError(f"this index is lexical-only (built without an embedding model): :mode {mode} needs "
                             "vectors; rebuild with a model (digest-rag build --model NAME) to use it")
        return self._set(mode=mode)

    def _k(self, args: list[str]) -> str:
        value = self._one(args, "k", ":k 5")
        if not value.isdigit():
            raise UsageError(f":k needs a whole number (got {value!r})")
        return self._set(k=int(value))

    def _lang(self, args: list[str]) -> str:
        value = self._one(args, "lang", ":lang ko|en|mixed|any")
        return self._set(language=None if value in _CLEAR else value)

    def _from(self, args: list[str]) -> str:
        value = args[0] if args else "-"
        return self._set(date_from=None if value in _CLEAR else value)

    def _to(self, args: list[str]) -> str:
        value = args[0] if args else "-"
        return self._set(date_to=None if value in _CLEAR else value)

    def _tag(self, args: list[str]) -> str:
        return self._set(tags=[] if not args or args == ["-"] else args)

    def _author(self, args: list[str]) -> str:
        return self._set(authors=[] if not args or args == ["-"] else [" ".join(args)])

    def _min_score(self, args: list[str]) -> str:
        value = args[0] if args else "-"
        if value in _CLEAR:
            return self._set(min_score=None)
        try:
            minimum = float(value)
        except ValueError:
            raise UsageError(f":min-score needs a number (got {value!r})") from None
        return self._set(min_score=minimum)

    def _open(self, args: list[str]) -> str:
        value = self._one(args, "open", ":open N (a rank from the last results)")
        if not self.last:
            raise UsageError(":open needs results: ask a question first")
        if not value.isdigit() or not 1 <= int(value) <= len(self.last):
            raise UsageError(f":open takes a rank from 1 to {len(self.last)} (got {value!r})")
        return format_paper(self.last[int(value) - 1].paper, width=self.width)

    def _settings(self, _args: list[str]) -> str:
        o = self.options
        return (f"mode {o.mode} · k {o.k} · lang {o.language or 'any'} · from {o.date_from or '-'} · "
                f"to {o.date_to or '-'} · tags {' '.join('#' + t for t in o.tags) or '-'} · "
                f"authors {', '.join(o.authors) or '-'} · min-score {o.min_score if o.min_score is not None else '-'}")

    def _help(self, _args: list[str]) -> str:
        return HELP

    def _quit(self, _args: list[str]) -> str:
        self.done = True
        return ""

    # -------------------------------------------------------------------- lines
    def handle(self, line: str) -> str:
        """The output for one input line; bad input gives ``error: …`` (one line) and the shell goes on."""
        line = line.strip()
        if not line:
            return ""
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = self._command(line[1:]) if line.startswith(":") else self._ask(line)
            notes = dict.fromkeys(f"warning: {' '.join(str(w.message).split())}" for w in caught
                                  if not issubclass(w.category, (DeprecationWarning, FutureWarning)))
            return "\n".join([*notes, out]) if notes else out
        except DigestRagError as exc:
            return f"error: {' '.join(str(exc).split())}"

    def _command(self, text: str) -> str:
        try:
            words = shlex.split(text)
        except ValueError:
            words = text.split()
        if not words:
            return self._help([])
        name, args = words[0].lower(), words[1:]
        command = self._commands.get(name)
        if command is None:
            raise UsageError(f"unknown command ':{name}'; :help lists them")
        return command(args)

    def _ask(self, question: str) -> str:
        request = SearchRequest.parse(query=question, **self.options.model_dump())
        self.live.refresh()  # a cheap stat; picks up a generation committed since the last question

        def work(index: DigestIndex) -> str:
            hits = request.run(index)
            self.last = hits
            return format_hits(hits, color=self.color, width=self.width)

        return self.live.call(work)  # on the index's thread, where torch's OpenMP team lives (digest_rag.frontends.live)


def _history_path() -> Path:
    from digest_rag.dense.onnx_runtime import cache_root

    return cache_root() / "shell_history"


def _terminal_lines(prompt: str) -> Iterator[str]:
    """Lines from prompt_toolkit: editing, wide characters, history and suggestions."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    try:
        path = _history_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        history: FileHistory | InMemoryHistory = FileHistory(str(path))
    except OSError:  # a read-only home: history for this session only
        history = InMemoryHistory()
    session: PromptSession[str] = PromptSession(history=history, auto_suggest=AutoSuggestFromHistory())
    while True:
        try:
            yield session.prompt(prompt)
        except KeyboardInterrupt:  # Ctrl-C clears the line, as in other shells
            continue
        except EOFError:
            return


def _plain_lines(stream: TextIO) -> Iterator[str]:
    for line in stream:
        yield line.rstrip("\n")


def run_shell(index_dir: str | Path, *, width: int = 100, color: bool = False,
              stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
    """Run the shell on ``index_dir`` until :quit or end of input (what `digest-rag shell` does)."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    live = LiveIndex(index_dir, interval=0)
    try:
        shell = Shell(live, width=width, color=color)
        interactive = stdin.isatty() and stdout.isatty()
        if interactive:
            # Kiwi loads while the reader types the first question (it holds the prompt for a moment at most).
            start_kiwi_in_background()
            papers = live.info()["papers"]
            print(strip_controls(f"digest-rag shell · {papers} papers in {live.index_dir} · {shell._settings([])}\n"
                                 "질문을 입력하세요 (:help for commands, :quit to leave)"), file=stdout, flush=True)
        for line in _terminal_lines("digest-rag> ") if interactive else _plain_lines(stdin):
            out = shell.handle(line)
            if out:  # corpus text and file names never bring their control characters to the terminal
                print(strip_controls(out, keep_colors=shell.color), file=stdout, flush=True)
            if shell.done:
                break
    finally:
        live.close()
