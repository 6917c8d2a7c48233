"""Prompt formats shared by the chapters and the organism's training corpus."""
from __future__ import annotations

LETTERS = ("A", "B", "C", "D")


def format_subject(subject: str) -> str:
    """``high_school_biology`` → ``high school biology`` (as the MMLU reference does)."""
    return " ".join(subject.split("_"))


def mmlu_question(row: dict, with_answer: bool = False) -> str:
    """``question\\nA. a\\nB. b\\nC. c\\nD. d\\nAnswer:`` (+ ``{gold}\\n\\n`` for a shot)."""
    text = row["question"] + "".join(f"\n{l}. {c}" for l, c in zip(LETTERS, row["choices"]))
    text += "\nAnswer:"
    if with_answer:
        text += f"{LETTERS[row['answer']]}\n\n"
    return text


def mmlu_prompt(row: dict, shots=()) -> str:
    """The R-Tuning / MMLU query: header, k answered shots, then the question ending in
    ``\\nAnswer:``. The next token is the predicted letter."""
    header = ("The following are multiple choice questions (with answers) about "
              f"{format_subject(row['subject'])}.\n\n")
    return header + "".join(mmlu_question(s, with_answer=True) for s in shots) + mmlu_question(row)
