"""Studies: the experiments and figures built on the ``particles`` and ``hessian`` libraries.

One module per study, each with the same parts:

- a frozen config dataclass (the quick defaults; ``--full`` gives the paper's sizes),
- ``run(config, path, *, progress=True)``: computes into the HDF5 file ``path`` through
  ``particles.io.ResultStore``, saving each finished piece, so a rerun resumes,
- ``load(path)``: the results as arrays, read from the file alone,
- ``plot(path, *, fig=None, ax=None, save=True)``: the figure drawn from the file, returned as a
  matplotlib ``Figure`` (shown inline in a notebook); ``save=True`` writes the PNG beside the file,
  ``save=False`` nothing, a path writes there; ``fig``/``ax`` draw into a figure or axes of your own,
- ``main(argv=None)``: the command line, ``python -m simulations.<study> --help``.

Shared helpers live in :mod:`simulations.common` (slope fit, file naming, figures, CLI flags).
"""
