"""How the CLI's --help reads: placeholders written as the README's synopsis writes them (QUERY, --tag TAG, --mode hybrid|dense|lexical) instead of typer's {query} and <list[str]>, and the commands in the synopsis' order."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from digest_rag.frontends.cli_output import (
    echo,
    err,
)

try:  # typer >= 0.24 vendors click; older releases use click itself
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as _click_exc  # type: ignore[no-redef]


# What `--help` shows after an option, as the README's synopsis writes it; otherwise the option's name in capitals.
# (typer's default is the Python type: <str>, <list[str]>, <int range>, <list[hybrid|dense|lexical]>.)
METAVARS = {
    "index": "DIR", "k": "N", "date_from": "DATE", "date_to": "DATE", "model": "NAME_OR_PATH", "search_param": "N",
    "batch_size": "N", "wait": "SECONDS", "factory": "FAISS_FACTORY", "device": "cpu|cuda|mps", "workers": "N",
    "gpus_per_worker": "G", "ray_address": "HOST:PORT", "port": "PORT", "rate_limit": "N", "output": "FILE",
    "fusion_weights": "WEIGHTS", "tag": "TAG", "author": "NAME", "min_score": "X", "out": "DIR",
    "base": "NAME_OR_PATH", "steps": "N", "seed": "N", "dim": "N", "lr": "RATE", "exclude_eval": "QUERIES.jsonl",
    "exclude_heldout_eval": "QUERIES.jsonl",
}


class HelpArgument(TyperArgument):
    """An argument as the README writes it: QUERY, PATHS... or [PATHS]..., without a type tag."""

    def _name(self) -> str:
        return self.metavar or (self.name or "").upper()

    def _usage_display_name(self) -> str:
        name = self._name() if self.required else f"[{self._name()}]"
        return name + ("..." if self.nargs != 1 else "")

    def _rich_display_name(self) -> str:
        return self._name() + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: Any) -> str:  # noqa: ARG002 - click's signature
        return ""


class HelpOption(TyperOption):
    """An option followed by a word for its value (--from DATE, --mode hybrid|dense|lexical), not a Python type."""

    def display_type_rich(self, ctx: Any) -> str:  # noqa: ARG002 - click's signature
        if self.metavar:
            return self.metavar
        desc = getattr(self, "type_descriptor", None)  # typer >= 0.2x; older releases keep click's self.type
        choices = (desc.choices if desc.is_choice else None) if desc is not None else \
            getattr(getattr(self, "type", None), "choices", None)
        if choices:
            return "|".join(str(getattr(c, "value", c)) for c in choices)
        return METAVARS.get(self.name or "", (self.name or "").upper())


def plain_metavars(command: Any) -> None:
    """Give every parameter of ``command`` (and its subcommands) the README's notation in --help."""
    for param in getattr(command, "params", ()):
        if type(param) is TyperArgument:
            param.__class__ = HelpArgument
        elif type(param) is TyperOption:
            param.__class__ = HelpOption
    for sub in getattr(command, "commands", {}).values():
        plain_metavars(sub)


class SynopsisGroup(TyperGroup):
    """Makes command-line usage errors one line on stderr with exit code 1, as documented.

    Click's default is a multi-line usage block and exit code 2, which would
    collide with "2 = data or index problem". --help writes values as the README does (`plain_metavars`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain_metavars(self)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _click_exc.NoArgsIsHelpError as exc:
            echo(exc.format_message())  # `digest-rag` alone: the help, not an error
            sys.exit(0)
        except _click_exc.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "digest-rag"
            err(f"error: {' '.join(exc.format_message().split())} (see '{where} --help')")
            sys.exit(1)
        except _click_exc.ClickException as exc:
            err(f"error: {' '.join(exc.format_message().split())}")
            sys.exit(exc.exit_code)
        except typer.Abort:
            err("aborted")
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)
