"""kbnb: knowledge-boundary notebooks, the library behind the book's chapters.

Subpackages by concept, each importing only from those listed before it:

==============  ==========================================================================
``core``        parameter checks, seeding, CPU thread settings, the version
``data``        TOFU, MMLU and refusal data sets; TOFU's split table; prompt formats
``organism``    tinyworld (a world with a known knowledge boundary) and its model organism
``lm``          any causal LM: loading, encoding, generation, activations, fine-tuning, embeddings
``eval``        answer metrics, intervals and paired comparisons, TOFU's suite, organism probes
``unlearning``  unlearning methods in one registry, their losses and loop, LUNAR
``methods``     R-Tuning, RAIT/CRaFT, attacks on LUNAR (algorithms only)
``report``      what every chapter shares: the Chapter helper, typed parameters, declarations
``chapters``    one module per notebook: its parameters, declaration, tables, figures, text
``book``        the book runner (``python -m kbnb.book``) and its real-model build (``kbnb.book.real``)
==============  ==========================================================================

The front door: ``kbnb.load_model(name)`` (the organism ``"tinyworld"``, SmolLM2
``"smollm2"``, the TOFU-tuned ``"smollm2-tofu"`` and its retain model, a hub id or a
folder) and ``kbnb.format_prompt(tok, question)``.
"""
import os as _os

from kbnb.core import notices as _notices
from kbnb.core import threads as _threads
from kbnb.core.version import __version__  # noqa: F401

_threads.configure_environment()  # before torch loads OpenMP: see kbnb/core/threads.py
_notices.drop_optional_kernel_notices()  # before bitsandbytes loads: see kbnb/core/notices.py

if _os.environ.get("TQDM_DISABLE"):  # set by `python -m kbnb.book`: no bars in the book
    import tqdm.auto as _tqdm_auto

    class _QuietTqdm(_tqdm_auto.tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    _tqdm_auto.tqdm = _QuietTqdm

from kbnb.lm.models import format_prompt, load_model, resolve_device  # noqa: E402, F401

_threads.configure_torch()
