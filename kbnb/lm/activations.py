"""Reading and steering activations of any decoder-only transformer.

``capture`` records inputs or outputs of a named submodule in many layers in one
forward pass per batch (``record_output``: one module's output, gradients kept);
``steer`` adds a vector to a module's output at the prompt positions only (all of them,
or the last); ``skip`` removes an MLP or a whole block. Every hook is registered and
removed by one helper. Layer containers and MLP names are found, not hard-coded.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from tqdm.auto import tqdm

from kbnb.lm.encoding import encode_batch, model_inputs

# paths of the stack of blocks in common architectures: Llama, Mistral, Qwen2, Gemma, Phi,
# Phi-3 (model.layers), OPT (model.decoder.layers), GPT-2, GPT-J, Falcon, Bloom
# (transformer.h), GPT-NeoX (gpt_neox.layers), MPT (transformer.blocks)
_LAYER_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers",
                "model.language_model.layers", "transformer.blocks", "transformer.layers",
                "model.transformer.h", "layers", "h", "blocks")
# MLP output projections, relative to a block, by architecture: Llama/Mistral/Qwen2/
# Gemma/Phi-3/MPT-style down_proj, GPT-2 c_proj (Conv1D), GPT-NeoX/Falcon/Bloom
# dense_4h_to_h, Phi mlp.fc2, GPT-J mlp.fc_out, OPT fc2 (on the block itself), MPT
# ffn.down_proj. Anything else: the rule in ``mlp_out_name``.
_MLP_OUT = ("mlp.down_proj", "mlp.c_proj", "mlp.dense_4h_to_h", "mlp.fc2", "mlp.fc_out",
            "ffn.down_proj", "feed_forward.w2", "feed_forward.down_proj", "fc2")
_MLP_CONTAINERS = ("mlp", "ffn", "feed_forward", "mlp_block", "feedforward")
_OVERRIDE_ATTR = "_kbnb_mlp_module"


def _get(obj, path):
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _unwrap(model):
    get = getattr(model, "get_base_model", None)  # a peft model
    return get() if callable(get) else getattr(model, "module", model)


def is_projection(module) -> bool:
    """``nn.Linear`` (bitsandbytes' quantized linears included) or GPT-2's ``Conv1D``."""
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def get_layers(model) -> torch.nn.ModuleList:
    """The model's list of transformer blocks: a known path, else the longest
    ``ModuleList`` whose length is the config's number of layers."""
    model = _unwrap(model)
    for path in _LAYER_PATHS:
        layers = _get(model, path)
        if isinstance(layers, torch.nn.ModuleList) and len(layers):
            return layers
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    found = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    if n and found:
        return found[0]
    raise ValueError(f"cannot find the transformer blocks of {type(model).__name__}; "
                     f"looked for {', '.join(_LAYER_PATHS)} and a ModuleList of "
                     f"config.num_hidden_layers blocks")


def n_layers(model) -> int:
    return len(get_layers(model))


def check_layer(model, layer: int, name: str = "layer") -> int:
    """``layer`` if valid (negative counts from the end), else a clear ValueError."""
    L = n_layers(model)
    if not isinstance(layer, int) or isinstance(layer, bool) or not -L <= layer < L:
        raise ValueError(f"{name}={layer} but the model has {L} layers (0–{L - 1})")
    return layer % L


def set_mlp_module(model, module: str | None) -> None:
    """Make ``module`` (a submodule path relative to a block, e.g. ``"mlp.down_proj"``)
    the MLP output projection every kbnb function uses for ``model`` (what the LUNAR
    and attacks notebooks' ``module`` parameter does). ``None`` or ``""`` goes back to
    automatic discovery. The choice travels with deep copies of the model."""
    if not module:
        if hasattr(model, _OVERRIDE_ATTR):
            delattr(model, _OVERRIDE_ATTR)
        return
    block = get_layers(model)[0]
    m = _get(block, module)
    if not isinstance(m, torch.nn.Module):
        raise ValueError(f"module={module!r} not found in the first block "
                         f"({type(block).__name__}); its submodules: "
                         f"{', '.join(n for n, _ in block.named_modules() if n)}")
    object.__setattr__(model, _OVERRIDE_ATTR, module)


def mlp_out_name(model) -> str:
    """Name (relative to a block) of the MLP's output projection, e.g. ``mlp.down_proj``.

    The ``module`` override (:func:`set_mlp_module`) if set; else a known name
    (``_MLP_OUT``); else the last ``Linear``/``Conv1D`` registered inside the block's
    MLP submodule (``mlp``, ``ffn``, ``feed_forward``...)."""
    override = getattr(model, _OVERRIDE_ATTR, None)
    if override:
        return override
    block = get_layers(model)[0]
    for name in _MLP_OUT:
        if is_projection(_get(block, name)):
            return name
    for cname in _MLP_CONTAINERS:
        container = getattr(block, cname, None)
        if isinstance(container, torch.nn.Module):
            projs = [n for n, m in container.named_modules() if n and is_projection(m)]
            if projs:
                return f"{cname}.{projs[-1]}"
    raise ValueError(f"cannot find the MLP output projection in {type(block).__name__}; "
                     f"pass module=... (the LUNAR and attacks notebooks' `module` parameter, "
                     f"or kbnb.lm.activations.set_mlp_module(model, name)) naming one of the "
                     f"block's submodules: {', '.join(n for n, _ in block.named_modules() if n)}")


def get_module(model, layer: int, module: str | None = None) -> torch.nn.Module:
    """The submodule ``module`` (``None`` or ``""``: the MLP output projection,
    :func:`mlp_out_name`) of block ``layer``; ``"block"`` for the block itself."""
    block = get_layers(model)[check_layer(model, layer)]
    module = module or mlp_out_name(model)
    if module == "block":
        return block
    m = _get(block, module)
    if m is None:
        raise ValueError(f"module={module!r} not found in layer {layer}")
    return m


def as_btd(x: torch.Tensor, shape) -> torch.Tensor:
    """``x`` as ``[B, T, d]``: OPT's MLP runs on flattened ``[B*T, d]`` tokens, which
    are viewed back with the block's input ``shape`` ``(B, T)``."""
    if x.dim() == 2 and shape is not None and x.shape[0] == shape[0] * shape[1]:
        return x.view(shape[0], shape[1], -1)
    return x


@contextmanager
def track_shape(model, layer: int):
    """Records ``(B, T)`` of block ``layer``'s input hidden states in the yielded dict
    (``"shape"``) at every forward pass, for hooks on modules that see flattened tokens."""
    state = {}

    def pre(m, args, kwargs):
        h = args[0] if args else kwargs.get("hidden_states")
        if torch.is_tensor(h) and h.dim() == 3:
            state["shape"] = tuple(h.shape[:2])

    h = get_layers(model)[check_layer(model, layer)].register_forward_pre_hook(pre, with_kwargs=True)
    try:
        yield state
    finally:
        h.remove()


def _reduce(x, mask, position):
    """x ``[B, T, d]`` (or flattened ``[B*T, d]``), mask ``[B, T]`` → ``[B, d]``
    (mean/last) or ``[B, T, d]`` (all)."""
    x = as_btd(x, tuple(mask.shape))
    mask = mask.to(x.device)
    if position == "mean":
        m = mask.unsqueeze(-1).to(x.dtype)
        return (x * m).sum(1) / m.sum(1).clamp(min=1)
    if position == "last":
        return x[:, -1]  # left padding: the last position is the last real token
    if position == "all":
        return x
    raise ValueError(f"position={position!r}: allowed 'mean', 'last', 'all'")


@torch.no_grad()
def capture(model, tok, prompts, layers=None, module: str | None = None, kind: str = "output",
            position: str = "mean", batch_size: int = 32, progress: bool = False):
    """Activations of ``module`` in each of ``layers`` for every prompt, one forward
    pass per batch for all layers.

    kind: ``output`` or ``input`` of the module. position: ``mean`` over the prompt's
    tokens, ``last`` token, or ``all``. Returns a float32 CPU tensor
    ``[n_layers, N, d]`` for mean/last; for ``all`` a list (one per prompt) of
    ``[n_layers, T_i, d]`` tensors without padding."""
    if kind not in ("output", "input"):
        raise ValueError(f"kind={kind!r}: allowed 'output', 'input'")
    if position not in ("mean", "last", "all"):
        raise ValueError(f"position={position!r}: allowed 'mean', 'last', 'all'")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be an integer >= 1")
    if tok.padding_side != "left":
        raise ValueError("capture needs tok.padding_side == 'left'")
    layers = list(range(n_layers(model))) if layers is None else [check_layer(model, l) for l in layers]
    store = {}

    def hook(i):
        def fn(mod, args, out):
            x = args[0] if kind == "input" else (out[0] if isinstance(out, tuple) else out)
            store[i] = x.detach()
        return fn

    results = []
    with _hooked([(get_module(model, l, module), hook(i)) for i, l in enumerate(layers)]):
        prompts = list(prompts)
        for s in tqdm(range(0, len(prompts), batch_size), disable=not progress, leave=False,
                      desc="activations"):
            batch = encode_batch(tok, prompts[s:s + batch_size])
            model(**model_inputs(model, batch))
            mask = batch["attention_mask"]
            stacked = torch.stack([_reduce(store[i], mask, position).float().cpu()
                                   for i in range(len(layers))])
            if position == "all":
                for b in range(stacked.shape[1]):
                    results.append(stacked[:, b][:, mask[b].bool()])
            else:
                results.append(stacked)
    return results if position == "all" else torch.cat(results, 1)


@contextmanager
def steer(model, layer: int, vector: torch.Tensor, module: str | None = None,
          prompt_only: bool = True, last_only: bool = False):
    """Add ``vector`` (``[d]``) to the output of ``module`` in ``layer``.

    With ``prompt_only`` the vector is added during the prefill pass (sequence
    length > 1) and not to tokens generated one at a time afterwards, as LUNAR's
    layer selection does. With ``last_only`` it is added at the last prompt position
    only, during the prefill pass (left padding puts every prompt's last token at the
    last position), as a LUNAR edit fitted on the last prompt token moves it. A
    negative multiple of the vector reverses the direction."""
    mod = get_module(model, layer, module)

    def fn(m, args, out):
        x = out[0] if isinstance(out, tuple) else out
        x3 = as_btd(x, state.get("shape"))  # OPT's MLP sees flattened [B*T, d] tokens
        if last_only:
            if x3.dim() != 3 or x3.shape[1] == 1:  # a generated token
                return out
            x3 = x3.clone()
            x3[:, -1] += vector.to(x3.device, x3.dtype)
            x = x3.view_as(x)
        else:
            if prompt_only and x3.dim() == 3 and x3.shape[1] == 1:
                return out
            x = (x3 + vector.to(x.device, x.dtype)).view_as(x)
        return (x,) + tuple(out[1:]) if isinstance(out, tuple) else x

    with track_shape(model, layer) as state, _hooked([(mod, fn)]):
        yield


@contextmanager
def skip(model, layers, module: str | None = None):
    """Skip ``module`` in each of ``layers`` (an int or a list). ``None`` or ``""``: the
    MLP output projection, whose output is replaced by zeros, so the residual stream
    passes through the layer's MLP (identical to a zero down-projection weight and bias);
    ``"block"``: the whole block, whose output is its input hidden states (``h_l =
    h_{l-1}``, as if the block were deleted)."""
    layers = [layers] if isinstance(layers, int) else list(layers)
    if module == "block":
        def fn(m, args, kwargs, out):
            h = args[0] if args else kwargs["hidden_states"]
            return (h,) + tuple(out[1:]) if isinstance(out, tuple) else h
    else:
        def fn(m, args, out):
            return torch.zeros_like(out)
    with _hooked([(get_module(model, check_layer(model, int(l)), module), fn) for l in layers],
                 with_kwargs=module == "block"):
        yield


@contextmanager
def record_output(model, layer: int, module: str | None = "block"):
    """Record the output of ``module`` (default ``"block"``, the residual stream after
    block ``layer``; ``None``: the MLP output projection) at every forward pass inside
    the block, in the yielded dict (``"output"``; a tuple's first element). Not detached:
    with gradients enabled they flow through it (RMU's loss on block activations)."""
    store = {}

    def fn(m, args, out):
        store["output"] = out[0] if isinstance(out, tuple) else out

    with _hooked([(get_module(model, layer, module), fn)]):
        yield store


@contextmanager
def _hooked(pairs, with_kwargs: bool = False):
    """Forward hooks ``[(module, fn)]`` registered for the block, removed on exit."""
    handles = []
    try:
        for mod, fn in pairs:
            handles.append(mod.register_forward_hook(fn, with_kwargs=with_kwargs))
        yield
    finally:
        for h in handles:
            h.remove()
