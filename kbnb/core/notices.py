"""Log records about optional hub kernels that kbnb never needs, dropped at their source.

bitsandbytes' CPU backend (imported by peft, which sentence-transformers imports) asks
the ``kernels`` package for an *optional* hub kernel for 4-bit matmuls on CPUs with
AVX512-BF16. kbnb runs offline (``HF_HUB_OFFLINE``), so ``kernels`` first logs that it
skips the hub's publisher check, then bitsandbytes logs that the kernel is not cached;
bitsandbytes then uses its own CPU code, so nothing is wrong. Exactly those two records
are dropped; every other message of both packages passes.
"""
import logging

OPTIONAL_KERNEL = "kernels-community/quantization-bitsandbytes"

# logger name -> the start of the record's message that is dropped
_NOTICES = {
    "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward",
    "kernels._internals.hf_hub": f"Skipping publisher trust check for '{OPTIONAL_KERNEL}'",
}


class _OptionalKernelNotice(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record):
        return not str(record.msg).startswith(self.prefix)


def drop_optional_kernel_notices() -> None:
    """Install the filters (idempotent); must run before bitsandbytes is imported."""
    for name, prefix in _NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OptionalKernelNotice) for f in logger.filters):
            logger.addFilter(_OptionalKernelNotice(prefix))
