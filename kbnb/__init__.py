"""kbnb: knowledge-boundary notebooks. A thin library behind the book's chapters."""
from kbnb.core.version import __version__  # noqa: F401

import os as _os

from kbnb.core import threads as _threads

_threads.configure_environment()  # before torch loads OpenMP: see kbnb/core/threads.py

if _os.environ.get("TQDM_DISABLE"):  # set by `python -m kbnb.book`: no bars in the book
    import tqdm.auto as _tqdm_auto

    class _QuietTqdm(_tqdm_auto.tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    _tqdm_auto.tqdm = _QuietTqdm

from kbnb import organism
from kbnb.lm import activations
from kbnb.data import loaders as data
from kbnb.lm import encoding
from kbnb.lm import generation
from kbnb.eval import metrics
from kbnb.report import runs
from kbnb.eval import stats
from kbnb.organism import world  # noqa: F401
from kbnb.lm.models import format_prompt, load_model, resolve_device  # noqa: F401

_threads.configure_torch()
