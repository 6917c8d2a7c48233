"""TOFU's splits, written once: the files TOFU has, and which retain and holdout splits
go with each forget split (TOFU: forgetXX's authors are held out of retain(100-XX); the
holdout split holds as many never-trained authors)."""
from __future__ import annotations

FORGET_SPLITS = ("forget01", "forget05", "forget10")
RETAIN_OF = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
HOLDOUT_OF = {"forget01": "holdout01", "forget05": "holdout05", "forget10": "holdout10"}
TOFU_SPLITS = ("full", *FORGET_SPLITS, *RETAIN_OF.values(), *HOLDOUT_OF.values(),
               "world_facts", "real_authors",
               *(f"{s}_perturbed" for s in (*FORGET_SPLITS, "retain", "world_facts",
                                             "real_authors")))


def check_forget_split(forget_split: str) -> str:
    """``forget_split`` when it is one of :data:`FORGET_SPLITS`, else a ValueError naming it."""
    if forget_split not in FORGET_SPLITS:
        raise ValueError(f"forget_split={forget_split!r}: allowed "
                         f"{', '.join(map(repr, FORGET_SPLITS))}")
    return forget_split
