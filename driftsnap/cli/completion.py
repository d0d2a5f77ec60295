"""``completion``: a bash or zsh completion script for the whole command line, made by shtab
from the very parser :func:`driftsnap.cli.build_parser` builds (so it never falls behind)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftsnap.cli import args
from driftsnap.errors import InputError

if TYPE_CHECKING:
    from driftsnap import config

SHELLS = ("bash", "zsh")

# Completes the SHELL argument of `driftsnap completion` itself (shtab calls it with the word).
_PREAMBLE = {
    "bash": '_shtab_driftsnap_shells() { compgen -W "' + " ".join(SHELLS) + '" -- "$1"; }\n',
}
_SHELL_CHOICES = {"bash": "_shtab_driftsnap_shells", "zsh": "(" + " ".join(SHELLS) + ")"}


def add(sub: Any) -> None:
    """Declare ``completion``."""
    p = args.command(
        sub,
        "completion",
        summary="print a bash or zsh completion script for driftsnap (commands, flags, choices)",
        description=(
            "Print a shell completion script for every driftsnap command, flag and choice on\n"
            "stdout. Install it once where your shell looks for completions, then open a new\n"
            "shell. bash needs the bash-completion package (most distributions ship it)."
        ),
        epilog=(
            "install:\n"
            "  bash:  mkdir -p ~/.local/share/bash-completion/completions\n"
            "         driftsnap completion bash > ~/.local/share/bash-completion/completions/"
            "driftsnap\n"
            "  zsh:   mkdir -p ~/.zfunc && driftsnap completion zsh > ~/.zfunc/_driftsnap\n"
            "         and in ~/.zshrc, before compinit:  fpath=(~/.zfunc $fpath)\n"
            "  this shell only:  source <(driftsnap completion bash)\n\n"
            "examples:\n"
            "  driftsnap completion bash\n"
            "  driftsnap completion zsh"
        ),
    )
    shell = p.add_argument("shell", metavar="SHELL", help="bash or zsh")
    shell.complete = _SHELL_CHOICES  # type: ignore[attr-defined]  # read by shtab
    p.set_defaults(handler=completion)


def completion(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap completion SHELL``: the script on stdout; an unknown shell is exit 2."""
    import shtab  # noqa: PLC0415  (only this command needs it)

    from driftsnap.cli import build_parser  # noqa: PLC0415  (the package imports this module)

    if ns.shell not in SHELLS:
        raise InputError(
            f"unknown shell {ns.shell!r}: `driftsnap completion` prints scripts for "
            + " and ".join(SHELLS)
        )
    parser = build_parser()
    _complete_paths(parser, file=shtab.FILE, directory=shtab.DIRECTORY)
    script = shtab.complete(parser, shell=ns.shell, preamble=_PREAMBLE.get(ns.shell, ""))
    print(script.rstrip("\n"))  # exactly one final newline (shtab's bash script has none)
    return 0


def _complete_paths(parser: argparse.ArgumentParser, *, file: object, directory: object) -> None:
    """Every argument that takes a path completes file names (directory names for a DIR)."""
    for action in parser._actions:  # argparse keeps its subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _complete_paths(child, file=file, directory=directory)
        elif action.type is Path and not hasattr(action, "complete"):
            action.complete = directory if action.metavar == "DIR" else file  # type: ignore[attr-defined]
