"""The language-model layer, for any Hugging Face causal LM: loading (``models``), the one
tokenization path (``encoding``), token budgets for every batched pass (``batching``),
batched generation and scoring (``generation``), activations and steering
(``activations``), fine-tuning (``finetune``) and sentence embeddings (``embed``)."""
