"""Does the transcript so far end a sentence? English lexical rules for the end-of-turn detector.

`words_verdict(text) -> (verdict, reason)`:
- "incomplete": the last word cannot end an English sentence (an article, a preposition, a
  conjunction, an auxiliary after a noun, a filler), the text ends in a comma / dash / ellipsis,
  the user is stalling ("let me see"), or a number is still being dictated ("my number is 5 5 5");
- "complete": a trailing "!", a closing formula ("thank you", "bye"), or a short answer ("yes", "okay");
- "unknown": anything else. Whisper's punctuation comes from its language model, not from the
  speaker: it ends nearly every phrase with a period, and a question-shaped prefix with "?"
  (measured: "Could I get a table?" for the first words of "Could I get a table for six people on
  Sunday evening?", bench/turn_detector.py). So "." and "?" only say the words so far parse as a
  sentence; the audio model decides those. A "?" still keeps a stranded preposition ("What is it
  for?") from counting as unfinished.

The word lists are grammar, not tuned to any test set: closed-class words that need something
after them. Ambiguous ones are handled by their neighbour: "it is" / "yes I would" can end a
sentence (pronoun before an auxiliary), "turn it on" / "check in" are phrasal verbs, "I think so"
is finished while "so" after anything else is a conjunction.
"""

from __future__ import annotations

import re
from typing import Literal

WordsVerdict = Literal["complete", "incomplete", "unknown"]


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


ARTICLES = _set("a an the my your our their its his every")
FILLERS = _set("um umm ummm uh uhh uhm er erm ehm")
CONJUNCTIONS = _set("and or but nor because cause cos if unless although whereas whether so")
PREPOSITIONS = _set("""about against among amongst as at between beyond by despite during except for from in
    including into like of on onto per regarding than till to toward towards until unlike upon versus via with
    within without""")
#: Prepositions that are also verb particles: "turn it on", "check in", "stop by" end sentences.
PARTICLES = _set("in on by")
PHRASAL_VERBS = _set("""check checked checking log logged logging sign signed signing turn turned turning
    switch switched switching come came coming go going went hold holding carry carrying keep kept move moved
    hang hanging drop dropped stop stopped put putting try tried plug plugged count fill filled hand handed walk
    walked drive drove pass passed stand standing get got let swing fly log stay staying moving jump""")
PHRASAL_WINDOW_WORDS = 4  # "turn the lights on": the verb may be this far before its particle
OBJECT_PRONOUNS = _set("it them me him her us you this that")
AUXILIARIES = _set("""am is are was were be been being can could will would shall should may might must
    do does did gonna wanna gotta let's""")
#: Before an auxiliary these make a finished short answer possible: "yes it is", "I would".
SUBJECT_PRONOUNS = _set("i you he she it we they that this there here who which what")
#: "so" ends a sentence after these ("I think so", "I told you so", "and so on" ends in "on").
SO_FINAL_AFTER = _set("think hope guess believe suppose said say says told do did not seems appears")
STALLING = ("let me see", "let me think", "let me check", "hold on", "hang on", "one second", "one sec",
            "one moment", "just a second", "just a moment", "give me a second", "wait a second", "wait a minute")
#: A wh-word shortly before a final auxiliary makes an embedded clause: "where the station is".
WH_WORDS = _set("what where when who how which why whatever wherever")
WH_WINDOW_WORDS = 5
CLOSINGS = ("thanks", "thank you", "please", "bye", "goodbye", "bye bye", "that's all", "that's it",
            "that is all", "that is it", "cheers")
#: "please" after these asks for something still to come: "could you please".
PLEASE_OPEN_AFTER = _set("you can could would will")
SHORT_ANSWERS = _set("""yes no yeah yep yup nope sure okay ok right correct exactly great perfect fine alright
    hello hi hey absolutely definitely""")
SHORT_ANSWER_MAX_WORDS = 3

#: Numbers being dictated: digit counts that make a whole number, by what the user said it is.
NUMBER_LENGTHS: dict[str, tuple[int, ...]] = {
    "card": (15, 16), "zip": (5, 9), "postcode": (5, 6, 7), "pin": (4, 6),
    "phone": (7, 10, 11), "number": (7, 10, 11), "digits": (7, 10, 11), "code": (4, 5, 6),
    "account": (8, 10, 12), "extension": (3, 4, 5), "reference": (6, 8, 10), "confirmation": (6, 8, 10),
}
SPELLED_DIGITS = _set("zero oh o one two three four five six seven eight nine double triple")
#: Without a keyword, a run of at least this many digit groups with fewer digits than a phone
#: number is a number being dictated ("5 5 5", "five five five").
DICTATION_MIN_GROUPS = 2
PHONE_MIN_DIGITS = 7
NUMBER_CONTEXT_WORDS = 4  # the keyword ("phone", "zip") must be this close before the digits
COPULAS = _set("is it's its was are be")

OPEN_ENDINGS = (",", ";", ":", "-", "–", "—", "...", "…")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_DIGIT_GROUP = re.compile(r"^[0-9][0-9\-]*$")


def words_verdict(text: str) -> tuple[WordsVerdict, str]:
    """Judge a transcript (English, Whisper-style punctuation); returns (verdict, short reason)."""
    stripped = text.strip().strip('"').strip()
    words = _WORD.findall(stripped.lower().replace("’", "'"))
    if not words:
        return "unknown", "no words"
    if stripped.endswith(OPEN_ENDINGS):
        return "incomplete", f"ends with '{_open_ending(stripped)}'"
    last = words[-1]
    if last in FILLERS:
        return "incomplete", f"ends with filler '{last}'"
    if last in ARTICLES:
        return "incomplete", f"ends with '{last}'"
    if stalled := _stalling(words):
        return "incomplete", f"stalling: '{stalled}'"
    if stripped.endswith("?"):
        return "unknown", "ends with '?' (not trusted)"
    if dictated := _dictating_number(stripped.lower()):
        return "incomplete", dictated
    if reason := _open_last_word(words):
        return "incomplete", reason
    if stripped.endswith("!"):
        return "complete", "ends with '!'"
    if closing := _closing(words):
        return "complete", f"closing '{closing}'"
    if _short_answer(words):
        return "complete", f"short answer '{last}'"
    return "unknown", "no cue in the words" if not stripped.endswith(".") else "ends with '.' (not trusted)"


def _open_ending(text: str) -> str:
    return next(e for e in OPEN_ENDINGS if text.endswith(e))


def _open_last_word(words: list[str]) -> str | None:
    """Why the last word leaves the sentence open, or None."""
    last, before = words[-1], words[-2] if len(words) > 1 else ""
    if last == "so":
        two_back = words[-3] if len(words) > 2 else ""
        if before in SO_FINAL_AFTER or before == "so" or (before in OBJECT_PRONOUNS and two_back in SO_FINAL_AFTER):
            return None  # "I think so", "so so", "I told you so"
        return "ends with 'so'"
    if last == "then" and before in ("and", "but", "so", "or"):
        return f"ends with '{before} then'"
    if last == "that" and before in ("so", "such", "now", "order"):
        return f"ends with '{before} that'"
    if last == "please" and before in PLEASE_OPEN_AFTER:
        return f"ends with '{before} please'"
    if last in CONJUNCTIONS:
        return f"ends with '{last}'"
    if last in PREPOSITIONS:
        if last in PARTICLES and (PHRASAL_VERBS.intersection(words[-PHRASAL_WINDOW_WORDS:-1])
                                  or (before in OBJECT_PRONOUNS and last != "by") or before == "so"):
            return None  # "turn the lights on", "let me in", "and so on"
        return f"ends with '{last}'"
    if last in AUXILIARIES:
        if last in ("gonna", "wanna", "gotta", "let's", "be", "been", "being"):
            return f"ends with '{last}'"
        if before in SUBJECT_PRONOUNS or WH_WORDS.intersection(words[-WH_WINDOW_WORDS:-1]):
            return None  # "yes it is", "I would", "where the station is"
        return f"ends with '{last}'"
    return None


def _stalling(words: list[str]) -> str | None:
    tail = " ".join(words[-4:])
    return next((s for s in STALLING if tail == s or tail.endswith(" " + s)), None)


def _closing(words: list[str]) -> str | None:
    if words[-1] == "please" and len(words) > 1 and words[-2] in PLEASE_OPEN_AFTER:
        return None
    tail = " ".join(words[-3:])
    return next((c for c in CLOSINGS if tail == c or tail.endswith(" " + c)), None)


def _short_answer(words: list[str]) -> bool:
    """'yes', 'okay', 'that's right'; not 'there is no' (a determiner after a verb)."""
    before = words[-2] if len(words) > 1 else ""
    return (len(words) <= SHORT_ANSWER_MAX_WORDS and words[-1] in SHORT_ANSWERS
            and before not in AUXILIARIES and before not in ("have", "has", "had"))


def _dictating_number(text: str) -> str | None:
    """'number being dictated (N digits)' when the text ends in a run of digits that is shorter
    than a whole number of the kind named before it; None otherwise."""
    tokens = [t.strip(".,!?;:\"'") for t in text.split()]
    groups, digits = 0, 0
    for token in reversed(tokens):
        if _DIGIT_GROUP.match(token):
            digits += sum(c.isdigit() for c in token)
        elif token in SPELLED_DIGITS:
            digits += 0 if token in ("double", "triple") else 1
        else:
            break
        groups += 1
    if groups == 0:
        return None
    context = tokens[max(len(tokens) - groups - NUMBER_CONTEXT_WORDS, 0) : len(tokens) - groups]
    kind = next((k for t in reversed(context) for k in NUMBER_LENGTHS if t.startswith(k)), None)
    # "my number is 555" is being dictated; "table number 5" is a name, not a dictation
    if kind is not None and (groups >= DICTATION_MIN_GROUPS or context[-1] in COPULAS):
        lengths = NUMBER_LENGTHS[kind]
        if digits < max(lengths) and digits not in lengths:
            return f"{kind} being dictated ({digits} digits)"
        return None
    if groups >= DICTATION_MIN_GROUPS and digits < PHONE_MIN_DIGITS and _all_digits(tokens[-groups:]):
        return f"number being dictated ({digits} digits)"
    return None


def _all_digits(tokens: list[str]) -> bool:
    """A run like '5 5 5' or 'five five five', not 'table for two' (one spelled word)."""
    return all(_DIGIT_GROUP.match(t) or t in SPELLED_DIGITS for t in tokens)
