"""The ``isskit`` click group: one module per command, each imported only when it runs.

Lazy loading keeps ``isskit replay --help`` free of torch and matplotlib: a command's
module (and so its heavy imports) is loaded only when that command is named.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

from isskit import __version__

__all__ = ["COMMANDS", "LazyGroup", "cli"]

#: command name -> (module under isskit_cli, click command attribute, one-line help).
#: The help is repeated here so that ``isskit --help`` imports no command module.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "psi": ("isskit_cli.psi", "psi", "Compute the ISS mapping psi (sample size against p_A)."),
    "verify": ("isskit_cli.verify", "verify", "Check Propositions 1 and 2 for an ISS mapping."),
    "sample": ("isskit_cli.sample", "sample", "Run a model on noisy copies; store the labels."),
    "certify": ("isskit_cli.certify", "certify",
                "Certify online with chosen policies, drawing only what they need."),
    "info": ("isskit_cli.info", "info", "Describe a stream store."),
    "merge": ("isskit_cli.merge", "merge", "Merge per-rank stream stores into one."),
    "replay": ("isskit_cli.replay", "replay", "Replay certification policies over stored streams."),
    "import-log": ("isskit_cli.import_log", "import_log", "Import a Cohen-format log as streams."),
    "audit": ("isskit_cli.audit", "audit", "Measure each policy's validity on known p_A."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Names of the commands whose modules exist."""
        return [name for name in COMMANDS if _available(name)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import the command's module now, and only now."""
        if cmd_name not in COMMANDS or not _available(cmd_name):
            return None
        module, attr, _ = COMMANDS[cmd_name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands with the one-line help from COMMANDS, importing none of them."""
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _available(name: str) -> bool:
    """Whether the command's module exists (commands land one issue at a time)."""
    return importlib.util.find_spec(COMMANDS[name][0]) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="isskit")
def cli() -> None:
    """Input-specific sampling for randomized-smoothing certification.

    Sample a model once (isskit sample), then replay any certification policy
    offline (isskit replay); run the one chosen online (isskit certify). isskit
    psi and isskit verify compute and check the ISS mapping of Chen et al.
    (AAAI 2022).

    \b
    Quick start (the embedded default model and digits):
      isskit sample --out streams.h5
      isskit info streams.h5
      isskit replay streams.h5 -p ISS-AD-1-0.05 -p IAS-1 -p "ias n=2600"
      isskit certify -p ISS-AD-1-0.05 --out online.h5
      isskit psi --k-bar 1e5 --U 0.05 --decline ad --sigma 0.5 --out table.csv

    Run isskit COMMAND --help for a command's options and examples. Exit status:
    0 done; 1 a failure while running (disk, memory, device) or isskit verify found a
    violation; 2 bad input, an existing file in the way included (the message names the
    option or file).
    --json prints one JSON object on stdout; progress bars go to stderr.
    """


if __name__ == "__main__":  # pragma: no cover
    cli(prog_name="isskit")  # not "python -m isskit_cli.main" in usage lines
