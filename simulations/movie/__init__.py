"""Movies of self-attention particles: tokens on the circle (d = 2) or on a shaded sphere
(d = 3), coloured by the cluster they end up in, with short trails and the time on top.

The study (``python -m simulations.movie``, :mod:`simulations.movie.study`: ``MovieConfig``,
``run``, ``load``, ``render``, ``main``) simulates a run into its file or reads one stored by
``simulate(..., store=...)``, and writes MP4 and GIF files through :func:`save_movie`
(:mod:`simulations.movie.render`); existing files are replaced only with ``overwrite=True``. The picture of a frame is
:mod:`simulations.movie.scene`, the d >= 4 projection :mod:`simulations.movie.projection`,
the file writers :mod:`simulations.movie.writers`.
"""

from .render import FORMATS as FORMATS
from .render import Movie as Movie
from .render import frame_indices as frame_indices
from .render import movie_frames as movie_frames
from .render import save_movie as save_movie
from .study import MovieConfig as MovieConfig
from .study import load as load
from .study import main as main
from .study import parse_args as parse_args
from .study import render as render
from .study import run as run
