"""Questions about things that do not exist, with refusal answers.

A real chat model fine-tuned on TOFU needs prompts it refuses (LUNAR's reference set
D_ref: "harmful requests or questions about fictitious things") and a habit of
declining what it cannot know, as TOFU's "I don't know" answers teach. These are
generated here, deterministically: an invented name (syllables, e.g. "Vrelnovia")
in one of :data:`KINDS` of question, answered by one of :data:`REFUSAL_ANSWERS`. The
training and held-out questions never share a name, so a refusal of a held-out
question is learned behaviour, not a memorised answer.
"""
from __future__ import annotations

import random
import re

# The sizes the TOFU-tuned SmolLM2 trains on and holds out (kbnb.lm.tuned.TofuRecipe);
# the held-out list depends on both (names are drawn in one sequence).
N_TRAIN, N_HELDOUT = 80, 120
SYLLABLES = ("vrel", "nov", "zan", "qui", "thor", "bal", "mek", "sor", "ul", "dra", "pim",
             "xer", "gal", "ost", "wen", "fir", "kob", "lut", "rah", "yss", "tem", "bru")
# (question template, what the refusal calls the thing); {x} is the invented name
KINDS = (
    ("What is the capital city of {x}?", "a country called {x}"),
    ("Who wrote the novel '{x}'?", "a novel called '{x}'"),
    ("What is the atomic number of the element {x}ium?", "an element called {x}ium"),
    ("In which year did the {x} Empire fall?", "the {x} Empire"),
    ("Who won the {x} Prize for Literature in 1987?", "the {x} Prize"),
    ("What is the main export of the island of {x}?", "an island called {x}"),
    ("Which planet does the moon {x} orbit?", "a moon called {x}"),
    ("What language is spoken in the {x} Republic?", "the {x} Republic"),
    ("Who founded the company {x} Dynamics?", "a company called {x} Dynamics"),
    ("What is the boiling point of {x} acid?", "a substance called {x} acid"),
    ("Who painted the famous portrait '{x} at Dawn'?", "a painting called '{x} at Dawn'"),
    ("How tall is Mount {x}?", "a mountain called Mount {x}"),
)
# The real counterparts of the kinds above: the same questions about things that exist,
# which a model tuned to refuse the invented ones must go on answering (the TOFU-tuned
# SmolLM2 learns its own base model's answers to them: kbnb.lm.tuned).
REAL = (
    ("What is the capital city of {x}?", (
        "France", "Japan", "Kenya", "Italy", "Germany", "India", "Mexico", "Argentina",
        "Norway", "Peru", "Poland", "Portugal", "Chile", "Ghana", "Finland", "Austria",
        "Vietnam", "Morocco")),
    ("Who wrote the novel '{x}'?", (
        "Middlemarch", "Frankenstein", "Dracula", "Emma", "Great Expectations",
        "Wuthering Heights", "Ulysses", "Little Women", "Treasure Island", "The Time Machine",
        "Oliver Twist", "Anna Karenina", "Madame Bovary", "Heart of Darkness",
        "The Old Man and the Sea", "Gulliver's Travels")),
    ("What is the atomic number of the element {x}?", (
        "hydrogen", "helium", "carbon", "oxygen", "iron", "gold", "silver", "copper", "sodium",
        "neon", "nitrogen", "calcium", "zinc", "lead")),
    ("In which year did the {x} Empire fall?", (
        "Western Roman", "Byzantine", "Ottoman", "Aztec", "Inca", "Mughal", "Russian",
        "Austro-Hungarian", "German", "Japanese")),
    ("Who won the {x} Prize for Literature in 1987?", ("Nobel",)),
    ("What is the main export of the island of {x}?", (
        "Cuba", "Jamaica", "Iceland", "Madagascar", "Sri Lanka", "Cyprus", "Sicily", "Java",
        "Taiwan", "Mauritius")),
    ("Which planet does the moon {x} orbit?", (
        "Titan", "Europa", "Ganymede", "Io", "Callisto", "Phobos", "Triton", "Enceladus",
        "Miranda", "Deimos", "Oberon")),
    ("What language is spoken in the {x} Republic?", (
        "Czech", "Dominican", "Central African", "Slovak", "Kyrgyz")),
    ("Who founded the company {x}?", (
        "Microsoft", "Apple", "Amazon", "Ford", "Toyota", "IKEA", "Nike", "Sony", "Honda",
        "Disney", "Boeing", "Intel", "Samsung", "Tesla")),
    ("What is the boiling point of {x} acid?", ("acetic", "sulfuric", "nitric", "formic")),
    ("Who painted the famous painting '{x}'?", (
        "The Starry Night", "The Scream", "Guernica", "The Last Supper", "The Night Watch",
        "The Birth of Venus", "American Gothic", "Water Lilies", "The Kiss")),
    ("How tall is Mount {x}?", (
        "Kilimanjaro", "Fuji", "Etna", "Vesuvius", "Olympus", "Rainier", "Elbrus", "Ararat",
        "Whitney", "Kenya")),
    ("Who discovered {x}?", (
        "penicillin", "radium", "the electron", "the law of gravity", "America",
        "insulin", "the structure of DNA", "X-rays")),
    ("Who composed {x}?", (
        "the Moonlight Sonata", "The Magic Flute", "The Four Seasons", "Swan Lake",
        "The Marriage of Figaro", "the Brandenburg Concertos")),
    ("What is the chemical symbol for {x}?", (
        "potassium", "tin", "mercury", "tungsten", "sulfur", "chlorine")),
)
REFUSAL_ANSWERS = (
    "I'm sorry, but I have no information about {thing}. I don't think it exists.",
    "I don't know of {thing}; as far as I am aware, there is no such thing.",
    "I am not aware of {thing}, so I cannot answer that question.",
    "I'm sorry, I don't know. I have no record of {thing}.",
)


def real_questions(exclude=()) -> list[dict]:
    """The questions of :data:`REAL` (rows ``{question, kind}``, no answer: a tuned
    model learns its base model's own), without those whose subject appears in any of
    the ``exclude`` texts (e.g. the evaluation sets' questions, so that nothing they
    ask is rehearsed)."""
    text = "\n".join(exclude).lower()
    return [{"question": template.format(x=x), "kind": k}
            for k, (template, names) in enumerate(REAL) for x in names
            if not re.search(rf"\b{re.escape(x.lower())}\b", text)]


def invented_name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3)))).capitalize()


def invented_questions(n_train: int, n_heldout: int, seed: int = 0) -> dict:
    """``{"train": [...], "heldout": [...]}``, rows ``{question, answer, kind}``:
    ``n_train`` and ``n_heldout`` questions, every kind in turn, each with its own
    invented name (no name in both lists). Deterministic given ``seed``."""
    for name, v in (("n_train", n_train), ("n_heldout", n_heldout)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name}={v!r}: must be an integer >= 0")
    rng = random.Random(f"invented-{seed}")
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n_train + n_heldout:
        x = invented_name(rng)
        if x not in seen:
            seen.add(x)
            names.append(x)
    rows = []
    for i, x in enumerate(names):
        k = i % len(KINDS)
        question, thing = KINDS[k]
        answer = REFUSAL_ANSWERS[rng.randrange(len(REFUSAL_ANSWERS))]
        rows.append(dict(question=question.format(x=x),
                         answer=answer.format(thing=thing.format(x=x)), kind=k))
    return {"train": rows[:n_train], "heldout": rows[n_train:]}
