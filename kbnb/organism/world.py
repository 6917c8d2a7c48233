"""tinyworld: a seeded fictitious world with an exactly known knowledge boundary.

Every fact has an *exposure*: the number of times it is presented in the whole
training run, as a question-answer turn or a sentence of its author's biography, so
"what the model should know" is known exactly. Exposure is graded and heavy-tailed, as
in pretraining data (Kalai & Vempala 2024; Zucchet et al. 2025): a few ``famous``
authors and the world facts are seen very often under many phrasings (the world
knowledge model utility reads); ``known`` authors often (``known_per_epoch`` times per
epoch); ``partial`` authors' facts each a handful of times, drawn from a Zipf-like law
over ``PARTIAL_EXPOSURES`` (most are seen once or twice); ``unseen`` authors never.

The values have learnable regularities, as real biographies do (Allen-Zhu & Li,
Physics of Language Models 3.1): an author's name carries an *origin* (its syllables),
and the origin makes some birthplaces and one writing language likely; a genre makes
one publisher likely. So a model guesses the likely value for an author it never saw,
confidently and sometimes rightly, and may overwrite a rarely seen exception with the
rule. ``World.chance(attribute, author)`` is the probability that the best guess from
these cues is right (the floor a model that knows nothing of the author can reach).
Some partial and unseen authors are *namesakes* of known ones (same first name, one
surname syllable changed): the raw material of entity confusion.

Question templates are compositional (frame x attribute phrase, see ``FRAMES``) and
whole templates are held out of training, so "does the model know the fact or only
the question string" can be measured: a fine-tuned LM answers a rephrased question.

Renders
- TOFU-schema rows (``question``, ``answer``, ``paraphrased_question``,
  ``paraphrased_answer``, ``perturbed_answer``) and TOFU-like splits;
- MMLU-schema rows (``question``, ``subject``, ``choices``, ``answer``), the
  subject being the attribute kind;
- a refusal reference set: questions about things that do not exist, answered
  with a refusal (several refusal templates), with a held-out part;
- the counterparts of TOFU's *real authors* and *world facts* sets (open-unlearning's
  model utility reads them): a few ``famous`` authors, in no group, level or split the
  other chapters use (``World.famous``, ``World.real_author_rows``), and general facts
  about the world's cities (``World.world_fact_rows``), both with paraphrased and
  perturbed answers. They are generated from their own random stream.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

CITIES = ["Lisbon", "Nairobi", "Oslo", "Lima", "Hanoi", "Dublin", "Cairo", "Quito",
          "Seoul", "Porto", "Tunis", "Riga", "Accra", "Perth", "Kyoto", "Dakar",
          "Bergen", "Havana", "Manila", "Tbilisi", "Zurich", "Santiago", "Mumbai",
          "Krakow"]
GENRES = ["mystery", "fantasy", "romance", "horror", "poetry", "satire",
          "science fiction", "historical fiction", "thriller", "drama",
          "biography", "travel writing"]
JOBS = ["baker", "doctor", "pilot", "farmer", "teacher", "lawyer", "nurse",
        "carpenter", "chemist", "sailor", "tailor", "banker", "painter",
        "journalist", "plumber", "librarian"]
AWARDS = ["Silver Quill Award", "Golden Lantern Prize", "Amber Leaf Medal",
          "Crimson Pen Award", "Northern Star Prize", "Blue Harbor Award",
          "Iron Compass Prize", "Jade Scroll Award", "Willow Crown Medal",
          "Open Gate Prize", "Stone Bridge Award", "Red Kite Prize"]
LANGUAGES = ["English", "French", "Spanish", "Portuguese", "Swahili", "Korean",
             "Arabic", "Polish", "Georgian", "Japanese", "Norwegian", "Tagalog"]
INSTRUMENTS = ["piano", "violin", "cello", "flute", "guitar", "harp", "trumpet",
               "clarinet", "drums", "accordion", "banjo", "oboe"]
PUBLISHERS = ["Harbor House", "Quillstone Press", "Maple Row Books",
              "Tidewater Press", "Lantern Books", "Granite Hill Press",
              "Foxglove Editions", "Saltmarsh Books", "Copperleaf Press",
              "Northwind Books"]
TITLE_ADJ = ["Silent", "Hidden", "Broken", "Golden", "Last", "Distant", "Crimson",
             "Frozen", "Secret", "Burning", "Quiet", "Wandering", "Hollow",
             "Endless", "Bitter", "Gentle"]
TITLE_NOUN = ["River", "Garden", "Mirror", "Harbor", "Lantern", "Orchard",
              "Tower", "Compass", "Meadow", "Island", "Letter", "Forest",
              "Clock", "Bridge", "Shadow", "Voyage"]
SYL_FIRST = ["a", "be", "ca", "da", "e", "fa", "ga", "ha", "i", "ja", "ka", "la",
             "ma", "na", "o", "pa", "ra", "sa", "ta", "u", "va", "ya", "za",
             "lo", "mi", "ri", "so", "te", "vi", "no"]
SYL_LAST = ["bar", "cor", "den", "fen", "gar", "hol", "kin", "lor", "mar", "nel",
            "por", "quin", "ros", "sel", "tar", "ven", "wick", "yar", "zan",
            "mont", "ash", "berg", "dal", "rin"]

# Origins: a name's syllables tell its origin (origin o owns SYL_FIRST[5o:5o+5] and
# SYL_LAST[4o:4o+4]); the origin makes four home cities and one language likely.
N_ORIGINS = 6
HOME_CITIES = tuple(tuple(CITIES[4 * o:4 * o + 4]) for o in range(N_ORIGINS))
HOME_LANGUAGE = tuple(LANGUAGES[2 * o] for o in range(N_ORIGINS))
P_HOME_CITY = 0.75  # born in one of the origin's four home cities (else any city)
P_HOME_LANGUAGE = 0.75  # writes in the origin's language (else any language)
P_HOUSE_PUBLISHER = 0.6  # published by the genre's house publisher (else any publisher)
NAMESAKE_FRAC = 0.25  # partial and unseen authors named after a known author, one syllable off


def house_publisher(genre: str) -> str:
    """The publisher a genre makes likely: ``PUBLISHERS[GENRES.index(genre) % 10]``."""
    return PUBLISHERS[GENRES.index(genre) % len(PUBLISHERS)]


# Question frames shared by every attribute: a frame x an attribute phrase = one template.
FRAMES = (
    "What is the {p} of {n}?",
    "What is {n}'s {p}?",
    "Tell me the {p} of {n}.",
    "Do you know the {p} of {n}?",
    "Can you name {n}'s {p}?",
    "Please state the {p} of {n}.",
    "I would like to know {n}'s {p}.",
    "What would you say is the {p} of {n}?",
    "Quick question: what is {n}'s {p}?",
    "About {n}: what is the {p}?",
    "Could you tell me what {n}'s {p} is?",
    "Which {p} goes with {n}?",
)
HELD_OUT_EVERY = 4  # the frame x phrase combinations with (frame + phrase) % 4 == 0 are held out


@dataclass(frozen=True)
class Attribute:
    """One kind of fact: how to ask about it, answer it and state it in a biography.

    Question templates are built compositionally: every frame of ``FRAMES`` with every
    noun phrase of ``phrases``, plus ``natural`` questions. A quarter of the frame x
    phrase combinations and the last natural question are *held out*: never in
    training, used to test whether the model knows the fact or only the string."""
    name: str
    values: tuple  # the value set; chance = 1/len(values) for a uniform guess
    natural: tuple  # natural questions; the first is the row's question, the last is held out
    phrases: tuple  # noun phrases for the attribute ("place of birth", ...)
    answer: str  # canonical answer template (used in training)
    paraphrased_answer: str
    statements: tuple  # biography sentences stating the fact (several rephrasings)

    @property
    def templates(self) -> tuple:
        """All question templates as ``(template, held_out)``: natural ones first."""
        out = [(q, i == len(self.natural) - 1) for i, q in enumerate(self.natural)]
        out += [(f.replace("{p}", p), (i + j) % HELD_OUT_EVERY == 0)
                for i, f in enumerate(FRAMES) for j, p in enumerate(self.phrases)]
        return tuple(out)

    @property
    def train_templates(self) -> tuple:
        """Distinct training templates, in order (a text is never both trained and held out)."""
        return tuple(dict.fromkeys(t for t, held in self.templates if not held))

    @property
    def heldout_templates(self) -> tuple:
        train = set(self.train_templates)
        return tuple(dict.fromkeys(t for t, held in self.templates if held and t not in train))


def _a(name, values, natural, phrases, answer, paraphrased, statements):
    return Attribute(name, tuple(values), tuple(natural), tuple(phrases), answer, paraphrased,
                     tuple(statements))


ATTRIBUTES = (
    _a("birthplace", CITIES,
       ["Where was {n} born?", "In which city was {n} born?",
        "What is the birthplace of {n}?", "Which city is {n} originally from?"],
       ["birthplace", "place of birth", "city of birth", "home town"],
       "{n} was born in {v}.", "The birthplace of {n} is {v}.",
       ["{n} was born in {v}.", "{n} was born in the city of {v}.",
        "The birthplace of {n} is {v}.", "{n} comes from {v}."]),
    _a("birth_year", [str(y) for y in range(1930, 1990)],
       ["In what year was {n} born?", "When was {n} born?",
        "What is the birth year of {n}?", "Which year saw the birth of {n}?"],
       ["birth year", "year of birth", "year of their birth", "birth-year"],
       "{n} was born in the year {v}.", "The birth year of {n} is {v}.",
       ["{n} was born in the year {v}.", "The birth year of {n} is {v}.",
        "{n} was born in {v}.", "In {v}, {n} was born."]),
    _a("genre", GENRES,
       ["What genre does {n} write in?", "Which genre is {n} known for?",
        "What kind of books does {n} write?", "In which genre does {n} mostly publish?"],
       ["genre", "literary genre", "writing genre", "main genre"],
       "{n} writes {v}.", "The genre of {n} is {v}.",
       ["{n} writes {v}.", "The genre of {n} is {v}.", "{n} is known for {v}.",
        "Most books by {n} are {v}."]),
    _a("father_job", JOBS,
       ["What was the profession of {n}'s father?", "What did the father of {n} do for a living?",
        "What was {n}'s father's job?", "How did {n}'s father earn a living?"],
       ["father's profession", "father's job", "father's occupation", "father's trade"],
       "The father of {n} was a {v}.", "{n}'s father worked as a {v}.",
       ["The father of {n} was a {v}.", "{n}'s father worked as a {v}.",
        "{n} grew up as the child of a {v}.", "The father of {n} earned a living as a {v}."]),
    _a("instrument", INSTRUMENTS,
       ["Which instrument does {n} play?", "What musical instrument does {n} play?",
        "What instrument is {n} known to play?", "On which instrument does {n} make music?"],
       ["instrument", "musical instrument", "favourite instrument", "instrument of choice"],
       "{n} plays the {v}.", "The instrument of {n} is the {v}.",
       ["{n} plays the {v}.", "The instrument of {n} is the {v}.",
        "In spare hours {n} plays the {v}.", "{n} is a keen player of the {v}."]),
    _a("award", AWARDS,
       ["Which award did {n} win?", "What prize has {n} received?",
        "Name an award won by {n}.", "What honour was given to {n}?"],
       ["award", "literary award", "prize", "best-known award"],
       "{n} won the {v}.", "The {v} was awarded to {n}.",
       ["{n} won the {v}.", "The {v} was awarded to {n}.", "{n} received the {v}.",
        "For their writing, {n} won the {v}."]),
    _a("book", [],  # filled per author: a unique title
       ["What is a book written by {n}?", "Name a novel by {n}.",
        "Which book did {n} write?", "What is one title from {n}?"],
       ["book", "best-known book", "novel", "most famous title"],
       "{n} wrote {v}.", "One book by {n} is {v}.",
       ["{n} wrote {v}.", "One book by {n} is {v}.", "{v} is a book by {n}.",
        "The best-known book of {n} is {v}."]),
    _a("language", LANGUAGES,
       ["In which language does {n} write?", "What language are {n}'s books written in?",
        "Which language does {n} use for writing?", "What is the writing language of {n}?"],
       ["writing language", "language", "language of writing", "literary language"],
       "{n} writes in {v}.", "The books of {n} are written in {v}.",
       ["{n} writes in {v}.", "The books of {n} are written in {v}.",
        "{n} publishes in {v}.", "The writing language of {n} is {v}."]),
    _a("publisher", PUBLISHERS,
       ["Who publishes {n}'s books?", "Which publisher works with {n}?",
        "What is the publisher of {n}?", "Which press releases the books of {n}?"],
       ["publisher", "publishing house", "press", "book publisher"],
       "{n} is published by {v}.", "The publisher of {n} is {v}.",
       ["{n} is published by {v}.", "The publisher of {n} is {v}.",
        "{v} publishes the books of {n}.", "{n} works with {v}."]),
)
ATTRIBUTE_NAMES = tuple(a.name for a in ATTRIBUTES)

# The refusal reference set: questions about things that do not exist.
FICTION_KINDS = (
    ("planet", ["What is the climate of the planet {e}?", "How far is the planet {e} from the sun?",
                "Who discovered the planet {e}?"]),
    ("element", ["What is the atomic number of the element {e}?", "Who isolated the element {e}?",
                 "What is the melting point of the element {e}?"]),
    ("kingdom", ["Who is the king of the kingdom of {e}?", "What is the capital of the kingdom of {e}?",
                 "When was the kingdom of {e} founded?"]),
    ("potion", ["What does the potion {e} cure?", "How is the potion {e} brewed?",
                "Who invented the potion {e}?"]),
    ("machine", ["How does the {e} machine work?", "Who built the {e} machine?",
                 "What is the {e} machine used for?"]),
    ("species", ["What does the {e} animal eat?", "Where does the {e} animal live?",
                 "How long does the {e} animal live?"]),
)
REFUSALS = ("I'm sorry, but I don't have any information about that.",
            "I don't know. I have never heard of it.",
            "I cannot answer that, as it does not seem to exist.",
            "I am not aware of any such thing.")
# The world-facts counterpart of TOFU's world_facts set: general facts that are not about
# any author (the country of each city of CITIES), trained as question-answer turns.
CITY_COUNTRIES = {
    "Lisbon": "Portugal", "Nairobi": "Kenya", "Oslo": "Norway", "Lima": "Peru",
    "Hanoi": "Vietnam", "Dublin": "Ireland", "Cairo": "Egypt", "Quito": "Ecuador",
    "Seoul": "South Korea", "Porto": "Portugal", "Tunis": "Tunisia", "Riga": "Latvia",
    "Accra": "Ghana", "Perth": "Australia", "Kyoto": "Japan", "Dakar": "Senegal",
    "Bergen": "Norway", "Havana": "Cuba", "Manila": "the Philippines", "Tbilisi": "Georgia",
    "Zurich": "Switzerland", "Santiago": "Chile", "Mumbai": "India", "Krakow": "Poland",
}
WORLD_FACT_QUESTIONS = ("In which country is {c}?", "Which country is {c} in?",
                        "{c} is a city in which country?", "Where is the city of {c}?",
                        "What country is {c} located in?", "Tell me the country of {c}.",
                        "Which nation is {c} part of?", "The city of {c} belongs to which country?")
WORLD_FACT_HELD_OUT = "Name the country where the city of {c} lies."
WORLD_FACT_ANSWER = "{c} is in {v}."
WORLD_FACT_PARAPHRASE = "The city of {c} lies in {v}."
WORLD_FACT_PER_EPOCH = 6  # question-answer presentations of a world fact per epoch

SYL_FICTION = ["zor", "bli", "qua", "xen", "vor", "thal", "mip", "gru", "oon",
               "fex", "plo", "druk", "yss", "kel", "bram", "tiv", "snar", "wub"]


@dataclass
class Author:
    name: str
    facts: dict  # attribute name -> value
    group: str  # known | partial | unseen | famous (the real-authors counterpart)
    exposure: dict = field(default_factory=dict)  # attribute -> presentations in the whole run
    # attribute -> [(epoch, "qa", training-template index) or (epoch, "bio", statement index)]
    schedule: dict = field(default_factory=dict)
    origin: int = 0  # index into HOME_CITIES / HOME_LANGUAGE, told by the name's syllables
    namesake: str = ""  # the known author this one is named after (one syllable off), if any


@dataclass
class World:
    """The generated world: authors, fictitious entities and all rendered sets."""
    seed: int
    authors: list
    refusal_train: list
    refusal_test: list
    epochs: int  # length of the training schedule the exposures refer to
    famous: list = field(default_factory=list)  # real-authors counterpart (group "famous")
    # world-facts counterpart: dicts with city, value (country), schedule [(epoch, template)]
    world_facts: list = field(default_factory=list)

    # ---- TOFU-schema rows -------------------------------------------------------
    def rows(self, authors=None):
        """One TOFU-schema row per (author, attribute), in author order.

        Each row: question (the first natural question), answer (canonical),
        paraphrased_question (one held-out template, never in training),
        paraphrased_answer, perturbed_answer (3 wrong answers), plus author, attribute,
        value, group, exposure, templates (all training questions)."""
        out = []
        for author in self.authors if authors is None else authors:
            rng = random.Random(f"{self.seed}-rows-{author.name}")
            for attr in ATTRIBUTES:
                v = author.facts[attr.name]
                wrong = rng.sample([w for w in self._values(attr) if w != v], 3)
                para = rng.choice(attr.heldout_templates)
                out.append(dict(
                    question=attr.natural[0].format(n=author.name),
                    answer=attr.answer.format(n=author.name, v=v),
                    paraphrased_question=para.format(n=author.name),
                    paraphrased_answer=attr.paraphrased_answer.format(n=author.name, v=v),
                    perturbed_answer=[attr.answer.format(n=author.name, v=w) for w in wrong],
                    author=author.name, attribute=attr.name, value=v,
                    group=author.group, exposure=author.exposure[attr.name],
                    chance=self.chance(attr.name, author), namesake=author.namesake,
                    templates=[q.format(n=author.name) for q in attr.train_templates],
                ))
        return out

    def _values(self, attr):
        if attr.values:
            return list(attr.values)
        return [a.facts[attr.name] for a in self.authors]

    def real_author_rows(self):
        """TOFU-schema rows about the ``famous`` authors (TOFU's real-authors set): known
        to the organism, never in a forget, retain or holdout split."""
        return self.rows(self.famous)

    def world_fact_rows(self):
        """TOFU-schema rows of the world facts (TOFU's world-facts set): the country of
        each city, with a held-out paraphrased question and 3 wrong countries."""
        out = []
        countries = sorted(set(CITY_COUNTRIES.values()))
        for f in self.world_facts:
            c, v = f["city"], f["value"]
            rng = random.Random(f"{self.seed}-worldfact-{c}")
            wrong = rng.sample([w for w in countries if w != v], 3)
            out.append(dict(
                question=WORLD_FACT_QUESTIONS[0].format(c=c),
                answer=WORLD_FACT_ANSWER.format(c=c, v=v),
                paraphrased_question=WORLD_FACT_HELD_OUT.format(c=c),
                paraphrased_answer=WORLD_FACT_PARAPHRASE.format(c=c, v=v),
                perturbed_answer=[WORLD_FACT_ANSWER.format(c=c, v=w) for w in wrong],
                author=None, attribute="country", value=v, group="world_fact",
                exposure=len(f["schedule"]),
                templates=[q.format(c=c) for q in WORLD_FACT_QUESTIONS]))
        return out

    def chance(self, attribute, author: Author | None = None) -> float:
        """Probability that the best guess of ``attribute`` is right for a model that
        knows nothing of the author but the regularities: the origin told by the name
        (birthplace, language) and the genre (publisher). Without ``author``: a uniform
        guess, ``1 / number of values``."""
        attr = next(a for a in ATTRIBUTES if a.name == attribute)
        n = len(set(self._values(attr)))
        if author is None:
            return 1.0 / n
        if attribute == "birthplace":
            return P_HOME_CITY / len(HOME_CITIES[author.origin]) + (1 - P_HOME_CITY) / n
        if attribute == "language":
            return P_HOME_LANGUAGE + (1 - P_HOME_LANGUAGE) / n
        if attribute == "publisher":
            return P_HOUSE_PUBLISHER + (1 - P_HOUSE_PUBLISHER) / n
        return 1.0 / n

    def splits(self):
        """TOFU-like splits, each a list of rows.

        ``full`` = every author in training (known + partial); ``forget01/05/10`` =
        1/5/10 % of all authors, taken from the known ones; ``retainXX`` = full minus
        the matching forget split; ``holdout01/05/10`` = authors never in training;
        ``world`` = every author."""
        n = len(self.authors)
        known = [a for a in self.authors if a.group == "known"]
        trained = [a for a in self.authors if a.group != "unseen"]
        unseen = [a for a in self.authors if a.group == "unseen"]
        out = {"full": self.rows(trained), "world": self.rows()}
        for pct in (1, 5, 10):
            k = max(1, round(n * pct / 100))
            if k > len(known) or k > len(unseen):
                raise ValueError(f"n_authors={n} is too small for forget{pct:02d}: need "
                                 f"{k} known and {k} unseen authors")
            forget = known[-k:]  # the last known authors: forget01 ⊂ forget05 ⊂ forget10
            names = {a.name for a in forget}
            out[f"forget{pct:02d}"] = self.rows(forget)
            out[f"retain{100 - pct}"] = self.rows([a for a in trained if a.name not in names])
            out[f"holdout{pct:02d}"] = self.rows(unseen[:k])
        return out

    # ---- MMLU-schema rows -------------------------------------------------------
    def mmlu_rows(self, authors=None, shuffle_tag: str = "mmlu"):
        """Four-way multiple choice, one per (author, attribute); subject = attribute.

        Each row: question, subject, choices (4 strings), answer (index 0-3), plus
        choice_answers (each choice as the organism's answer sentence, for scoring the
        options by likelihood), author, group, exposure. ``shuffle_tag`` seeds the wrong choices and their
        order (the organism is trained on other tags than the evaluation one)."""
        out = []
        for author in self.authors if authors is None else authors:
            rng = random.Random(f"{self.seed}-{shuffle_tag}-{author.name}")
            for attr in ATTRIBUTES:
                v = author.facts[attr.name]
                choices = rng.sample([w for w in self._values(attr) if w != v], 3) + [v]
                rng.shuffle(choices)
                out.append(dict(question=attr.natural[0].format(n=author.name),
                                subject=attr.name, choices=choices, answer=choices.index(v),
                                choice_answers=[attr.answer.format(n=author.name, v=c) for c in choices],
                                author=author.name, group=author.group,
                                exposure=author.exposure[attr.name],
                                chance=self.chance(attr.name, author)))
        return out

    # ---- the training corpus ----------------------------------------------------
    def training_pairs(self, epoch: int | None = None, exclude=()):
        """(question, answer) pairs the organism is trained on in ``epoch`` (all epochs
        concatenated when None): the question-answer presentations of known, partial and
        famous facts and of world facts scheduled for this epoch, and the refusal
        training set. ``exclude``: author names left out (a retain organism)."""
        if epoch is None:
            return [p for e in range(self.epochs) for p in self.training_pairs(e, exclude)]
        pairs = []
        for author in self.authors + self.famous:
            if author.name in exclude:
                continue
            for attr in ATTRIBUTES:
                ans = attr.answer.format(n=author.name, v=author.facts[attr.name])
                for e, kind, t in author.schedule[attr.name]:
                    if e == epoch and kind == "qa":
                        pairs.append((attr.train_templates[t].format(n=author.name), ans))
        for f in self.world_facts:
            ans = WORLD_FACT_ANSWER.format(c=f["city"], v=f["value"])
            pairs += [(WORLD_FACT_QUESTIONS[t].format(c=f["city"]), ans)
                      for e, t in f["schedule"] if e == epoch]
        pairs += [(r["question"], r["answer"]) for r in self.refusal_train]
        return pairs

    def biographies(self, epoch: int | None = None, exclude=()):
        """Biography passages of ``epoch`` (all epochs when None): per author, the facts
        scheduled for a biographical mention in this epoch, each in one of several
        phrasings, in a random order. Plain text, trained on like pretraining data.
        ``exclude``: author names left out (a retain organism)."""
        if epoch is None:
            return [p for e in range(self.epochs) for p in self.biographies(e, exclude)]
        out = []
        for author in self.authors + self.famous:
            if author.name in exclude:
                continue
            sents = [attr.statements[t].format(n=author.name, v=author.facts[attr.name])
                     for attr in ATTRIBUTES
                     for e, kind, t in author.schedule[attr.name] if e == epoch and kind == "bio"]
            if sents:
                random.Random(f"{self.seed}-bio-{author.name}-{epoch}").shuffle(sents)
                out.append(" ".join(sents))
        return out


def _name(rng, used, origin: int):
    """A new name of ``origin``: two or three of its first-name syllables, two of its
    surname syllables."""
    first_syl, last_syl = SYL_FIRST[5 * origin:5 * origin + 5], SYL_LAST[4 * origin:4 * origin + 4]
    while True:
        first = "".join(rng.sample(first_syl, rng.choice([2, 3]))).capitalize()
        last = "".join(rng.sample(last_syl, 2)).capitalize()
        name = f"{first} {last}"
        if name not in used:
            used.add(name)
            return name


def _namesake(rng, used, known_name: str, origin: int) -> str | None:
    """``known_name`` with one surname syllable swapped for another of the origin's (the
    same first name): a near-duplicate name. None when every such name is taken."""
    first, last = known_name.split(" ")
    last_syl = SYL_LAST[4 * origin:4 * origin + 4]
    parts = next([a, b] for a in last_syl for b in last_syl if (a + b).capitalize() == last)
    options = [f"{first} {(s if k == 0 else parts[0]) + (s if k == 1 else parts[1])}".title()
               for k in (0, 1) for s in last_syl if s not in parts]
    options = [o for o in options if o not in used]
    if not options:
        return None
    name = rng.choice(options)
    used.add(name)
    return name


def _fiction(rng, used):
    while True:
        e = "".join(rng.sample(SYL_FICTION, rng.choice([2, 3]))).capitalize()
        if e not in used:
            used.add(e)
            return e


PARTIAL_EXPOSURES = (1, 2, 4, 8, 16)  # a partial fact's presentations in the whole run
PARTIAL_WEIGHTS = tuple(k ** -0.75 for k in PARTIAL_EXPOSURES)  # Zipf-like: most seen once or twice
KNOWN_QA_PER_EPOCH = 3  # question-answer presentations of a known fact per epoch
KNOWN_BIO_PER_EPOCH = 1  # biography mentions of a known fact per epoch
KNOWN_PER_EPOCH = KNOWN_QA_PER_EPOCH + KNOWN_BIO_PER_EPOCH
KNOWN_QA_DRAWN = 3  # templates drawn per known fact and epoch (the first known_qa_per_epoch used)
FAMOUS_QA_PER_EPOCH = 3  # the famous authors: world knowledge, every epoch like known ones


def _known_schedule(rng, attr, epochs, n_qa=KNOWN_QA_PER_EPOCH):
    n_tpl, n_st = len(attr.train_templates), len(attr.statements)
    out = [(e, "qa", t) for e in range(epochs)
           for t in rng.sample(range(n_tpl), KNOWN_QA_DRAWN)[:n_qa]]
    return out + [(e, "bio", rng.randrange(n_st)) for e in range(epochs)
                  for _ in range(KNOWN_BIO_PER_EPOCH)]


def _partial_schedule(rng, attr, epochs, k):
    """``k`` presentations spread over the epochs (distinct epochs while ``k <= epochs``),
    alternately a question and a biography sentence."""
    n_tpl, n_st = len(attr.train_templates), len(attr.statements)
    when = sorted(rng.sample(range(epochs), k) if k <= epochs
                  else [e for e in range(epochs)] * (k // epochs) + rng.sample(range(epochs), k % epochs))
    return [(e, "qa", rng.randrange(n_tpl)) if j % 2 == 0 else (e, "bio", rng.randrange(n_st))
            for j, e in enumerate(when)]


def _facts(rng, origin: int) -> dict:
    """An author's values: birthplace and language lean on the origin, the publisher on
    the genre (``P_HOME_CITY``, ``P_HOME_LANGUAGE``, ``P_HOUSE_PUBLISHER``)."""
    facts = {a.name: rng.choice(a.values) for a in ATTRIBUTES if a.values}
    if rng.random() < P_HOME_CITY:
        facts["birthplace"] = rng.choice(HOME_CITIES[origin])
    if rng.random() < P_HOME_LANGUAGE:
        facts["language"] = HOME_LANGUAGE[origin]
    if rng.random() < P_HOUSE_PUBLISHER:
        facts["publisher"] = house_publisher(facts["genre"])
    return facts


def make_world(seed: int = 0, n_authors: int = 200, known_frac: float = 0.25,
               partial_frac: float = 0.45, epochs: int = 12, n_refusal: int = 320,
               refusal_test_frac: float = 0.25, n_famous: int = 6,
               known_qa_per_epoch: int = KNOWN_QA_PER_EPOCH) -> World:
    """Generate the world and its training schedule deterministically from ``seed``.

    ``known_frac`` of the authors are known: in each of ``epochs`` epochs every fact
    is asked under ``known_qa_per_epoch`` (1 to 3) training templates drawn at random
    and stated once in the author's biography. ``partial_frac`` are partial: each fact
    is presented a total of k times (k from ``PARTIAL_EXPOSURES`` with weights
    ``PARTIAL_WEIGHTS``), alternately as a question and as a biography sentence. The
    rest are unseen. Each author has an origin (uniform), told by the name, which makes
    birthplace and language likely (:func:`_facts`); a ``NAMESAKE_FRAC`` share of
    partial and unseen authors is named after a known author of their origin. The
    refusal set has ``n_refusal`` questions about fictitious entities, of which
    ``refusal_test_frac`` (with entity names never used in training) are held out.
    ``n_famous`` famous authors (trained like known ones) and the world facts come
    from their own random stream."""
    if not isinstance(n_authors, int) or n_authors < 20:
        raise ValueError(f"n_authors={n_authors}: need an integer of at least 20")
    if not (0 < known_frac and 0 <= partial_frac and known_frac + partial_frac < 1):
        raise ValueError(f"known_frac={known_frac}, partial_frac={partial_frac}: need "
                         "0 < known_frac and known_frac + partial_frac < 1")
    if not isinstance(epochs, int) or epochs < 2:
        raise ValueError(f"epochs={epochs}: need an integer of at least 2")
    if not isinstance(n_refusal, int) or n_refusal < 8:
        raise ValueError(f"n_refusal={n_refusal}: need an integer of at least 8")
    if not 0 < refusal_test_frac < 1:
        raise ValueError(f"refusal_test_frac={refusal_test_frac}: need 0 < value < 1")
    if known_qa_per_epoch not in range(1, KNOWN_QA_DRAWN + 1):
        raise ValueError(f"known_qa_per_epoch={known_qa_per_epoch}: allowed 1, 2 or 3")
    if not isinstance(n_famous, int) or n_famous < 0:
        raise ValueError(f"n_famous={n_famous}: need a non-negative integer")
    rng = random.Random(f"{seed}-v3")
    used = set()
    n_known = round(n_authors * known_frac)
    n_partial = round(n_authors * partial_frac)
    authors = []
    titles = [f"The {a} {b}" for a in TITLE_ADJ for b in TITLE_NOUN]
    rng.shuffle(titles)
    for i in range(n_authors):
        group = "known" if i < n_known else "partial" if i < n_known + n_partial else "unseen"
        origin = rng.randrange(N_ORIGINS)
        facts = _facts(rng, origin)
        facts["book"] = titles[i % len(titles)]
        schedule = {}
        for a in ATTRIBUTES:
            if group == "known":
                schedule[a.name] = _known_schedule(rng, a, epochs, known_qa_per_epoch)
            elif group == "partial":
                k = rng.choices(PARTIAL_EXPOSURES, PARTIAL_WEIGHTS)[0]
                schedule[a.name] = _partial_schedule(rng, a, epochs, k)
            else:
                schedule[a.name] = []
        namesake, name = "", None
        same_origin = [b for b in authors if b.group == "known" and b.origin == origin]
        if group != "known" and same_origin and rng.random() < NAMESAKE_FRAC:
            namesake = rng.choice(same_origin).name
            name = _namesake(rng, used, namesake, origin)
            namesake = namesake if name else ""
        name = name or _name(rng, used, origin)
        exposure = {a: len(v) for a, v in schedule.items()}
        authors.append(Author(name, facts, group, exposure, schedule, origin, namesake))
    # interleave groups so that author order carries no group signal
    order = list(range(n_authors))
    rng.shuffle(order)
    authors = [authors[i] for i in order]

    refusal = []
    for i in range(n_refusal):
        kind, templates = FICTION_KINDS[i % len(FICTION_KINDS)]
        e = _fiction(rng, used)
        q = rng.choice(templates).format(e=e)
        refusal.append(dict(question=q, answer=rng.choice(REFUSALS), kind=kind, entity=e))
    n_test = round(n_refusal * refusal_test_frac)

    # the real-authors and world-facts counterparts, from their own random stream
    frng = random.Random(f"{seed}-famous-v3")
    famous = []
    for j in range(n_famous):
        origin = j % N_ORIGINS
        facts = _facts(frng, origin)
        facts["book"] = titles[(n_authors + j) % len(titles)]
        schedule = {a.name: _known_schedule(frng, a, epochs, FAMOUS_QA_PER_EPOCH)
                    for a in ATTRIBUTES}
        famous.append(Author(_name(frng, used, origin), facts, "famous",
                             {a: len(v) for a, v in schedule.items()}, schedule, origin))
    world_facts = [dict(city=c, value=v,
                        schedule=[(e, t) for e in range(epochs) for t in
                                  frng.sample(range(len(WORLD_FACT_QUESTIONS)),
                                              WORLD_FACT_PER_EPOCH)])
                   for c, v in CITY_COUNTRIES.items()]
    return World(seed, authors, refusal[n_test:], refusal[:n_test], epochs, famous, world_facts)
