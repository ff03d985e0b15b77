"""The flags every ``python -m simulations.<study>`` shares, and its argument parser."""

import argparse
from pathlib import Path


def study_parser(doc, *, out):
    """An ``argparse`` parser for a study: description from the module docstring, defaults
    shown in ``--help``, and the shared flags ``--full``, ``--out``, ``--no-progress``."""
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--full", action="store_true", help="the paper's sizes instead of the quick defaults")
    p.add_argument("--out", type=Path, default=Path(out), help="folder for the HDF5 results and figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def full_or_quick(value, full, quick, args):
    """``value`` when the flag was given (0 included), else the ``--full`` or quick default."""
    if value is not None:
        return value
    return full if args.full else quick
