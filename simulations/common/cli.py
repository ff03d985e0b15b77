"""The command line every ``python -m simulations.<study>`` shares.

One convention for all studies:

- the shared flags ``--full``, ``--out``, ``--overwrite``, ``--no-progress``, ``--threads`` and
  (where the study draws random numbers) ``--seed``, added by :func:`study_parser`;
- every flag shows its default in ``--help``; a default that ``--full`` changes is a
  :class:`FullDefault` and prints once, as "default 512; --full: 2048";
- values are checked by the type functions :func:`integer` and :func:`real` (0 and other falsy
  values are taken as given, never replaced by a default); a bad value ends in one line
  ``error: argument --batch: ...`` and exit code 2;
- :func:`refuse_existing` stops a run before any work when one of its output files exists,
  unless ``--overwrite``.

A new study adopts it in a few lines::

    p = study_parser("my_study", __doc__, seed=0)
    p.add_argument("--n", type=integer(2), default=FullDefault(32, 128), help="tokens")
    args = p.parse_args(argv)           # FullDefault resolved by --full
    set_threads(args.threads)
    refuse_existing(p, args, [figure_path(path)])
"""

import argparse
import math
import os
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple


class FullDefault(NamedTuple):
    """A default that ``--full`` changes: ``quick`` without it, ``full`` with it."""

    quick: object
    full: object

    def __str__(self):
        return f"{_show(self.quick)}; --full: {_show(self.full)}"


def _show(value):
    if isinstance(value, (list, tuple)):
        return " ".join(_show(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends "(default: ...)" to every flag whose help does not state its default itself."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is argparse.SUPPRESS or "default" in text:
            return text
        if isinstance(action, argparse._StoreTrueAction):
            shown = "off"
        elif isinstance(action.default, FullDefault):
            shown = str(action.default)
        elif action.default is None:
            raise ValueError(f"{action.option_strings[0]} defaults to None: its help must say what that means")
        else:
            shown = _show(action.default).replace("%", "%%")
        return f"{text} (default {shown})" if text else f"(default {shown})"


class StudyParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with one-line errors and ``--full``-dependent defaults."""

    def error(self, message):
        """Print ``<prog>: error: <message>`` on one line and exit with status 2."""
        message = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def parse_args(self, args=None, namespace=None):
        """Parse, then replace every :class:`FullDefault` left by its quick or full value."""
        parsed = super().parse_args(args, namespace)
        full = getattr(parsed, "full", False)
        for name, value in vars(parsed).items():
            if isinstance(value, FullDefault):
                setattr(parsed, name, value.full if full else value.quick)
        return parsed


def study_parser(
    name, doc, *, timing, out=None, seed=None, seed_help="seed of the random draws", threads=None, full=True
):
    """The parser of ``python -m simulations.<name>`` with the shared flags.

    Args:
        name: the study's module name, e.g. ``"phase_diagram"`` (program name and default folder).
        doc: the module docstring; its first paragraph is the description.
        timing: how long the study takes, measured (printed under the flags).
        out: default output folder (default ``results/<name>``).
        seed: default of ``--seed``; None for a study that draws no random numbers (no flag).
        seed_help: what ``--seed`` seeds.
        threads: default of ``--threads``; None keeps every core.
        full: False for a study whose defaults are already its full sizes (``--full`` then changes nothing).

    Returns:
        a :class:`StudyParser`.
    """
    p = StudyParser(
        prog=f"python -m simulations.{name}",
        description=doc.split("\n\n")[0],
        formatter_class=_HelpFormatter,
        epilog=textwrap.fill(f"Time on the 2-core development machine (one idle core): {timing}.", width=78),
    )
    shared = p.add_argument_group("shared by every study")
    shared.add_argument(
        "--full",
        action="store_true",
        help="the paper's sizes instead of the quick defaults"
        if full
        else "changes nothing here: the defaults are the study's full sizes",
    )
    shared.add_argument(
        "--out", type=Path, default=Path(out or f"results/{name}"), help="folder for the HDF5 results and figures"
    )
    shared.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing output files (without it a run stops before any work if one exists; "
        "an unfinished results file is always resumed)",
    )
    shared.add_argument("--no-progress", action="store_true", help="no progress bar")
    cores = f"every core, {os.cpu_count()} here"
    shared.add_argument(
        "--threads",
        type=integer(1),
        default=threads,
        help="threads for torch and Numba (speed only: results do not depend on it) "
        + (f"(default {threads})" if threads is not None else f"(default: {cores})"),
    )
    if seed is not None:
        shared.add_argument("--seed", type=integer(0), default=seed, help=seed_help)
    return p


def integer(low=None, high=None):
    """An argparse type: an int in [low, high] (either bound may be None); "1e3" is refused."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        _check_range(value, text, low, high)
        return value

    parse.__name__ = "integer"
    return parse


def real(low=None, high=None, *, above=None):
    """An argparse type: a finite float in [low, high], or > ``above`` (bounds may be None)."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be > {above:g}, got {text!r}")
        _check_range(value, text, low, high)
        return value

    parse.__name__ = "real"
    return parse


def _check_range(value, text, low, high):
    if low is not None and value < low:
        raise argparse.ArgumentTypeError(f"must be >= {_show(low)}, got {text!r}")
    if high is not None and value > high:
        raise argparse.ArgumentTypeError(f"must be <= {_show(high)}, got {text!r}")


def set_threads(threads):
    """Use ``threads`` threads in torch (when the study imported it) and Numba; None changes nothing."""
    if threads is None:
        return
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def refuse_existing(parser, args, paths):
    """Stop (exit 2, one line) when one of ``paths`` exists and ``--overwrite`` was not given.

    Called before any work: a finished run's figures and summaries are never replaced silently.
    The results file itself is not listed by the studies: a rerun resumes it (it only adds
    what is missing, and refuses a different config).
    """
    if args.overwrite:
        return
    existing = [Path(p) for p in paths if Path(p).exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        parser.error(f"{existing[0]} exists{more}; pass --overwrite to replace it, or another --out")


def config_or_exit(parser, build):
    """``build()``, with a ``ValueError``/``TypeError`` of the config turned into a one-line error."""
    try:
        return build()
    except (ValueError, TypeError) as err:
        parser.error(str(err))
