"""Data sets (TOFU, MMLU, refusal prompts) from a local folder or the hub, TOFU's split
table, and the prompt formats shared by the chapters and the organism's corpus."""
