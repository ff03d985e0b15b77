"""``python -m simulations.movie``: see :mod:`simulations.movie.study`."""

from .study import main

main()
