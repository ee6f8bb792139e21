"""Sentence splitting for the translation and speech-synthesis stages.

`split_sentences(text)` splits a finished text; `SentenceSplitter` does the same on text that
arrives in pieces (partial speech-recognition output), handing out each sentence as soon as its end
is certain. Both give the same sentences for the same text, however it is cut into pieces.

Rules:
- A sentence ends after a run of stops (``.``, ``!``, ``?``, ``…``, ``...``, ``?!``) followed by
  white space, or after an East Asian full stop (``。！？``) even without a space. Closing quotes
  and brackets right after the stop stay with the sentence.
- No split inside numbers ("3.5"), after titles and fixed abbreviations ("Mr.", "Dr.", "e.g.",
  "i.e.", "vs."), after single capital initials ("J. Smith"), before a word that starts in lower
  case ("etc. and more", "5 p.m. today"), or after "No." before a number.
- Control characters are removed (line breaks and tabs count as spaces), runs of white space
  become one space, and pieces with no letter or digit ("...", "!!") are dropped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

__all__ = ["clean_text", "split_sentences", "SentenceSplitter"]

# Stops that end a sentence only when white space follows.
_WESTERN_STOPS = frozenset(".!?…‼⁇⁈⁉")
# Stops that end a sentence by themselves (Chinese, Japanese; also used in Korean text).
_CJK_STOPS = frozenset("。！？｡．")
_STOPS = _WESTERN_STOPS | _CJK_STOPS
# Characters that may follow a stop and still belong to its sentence.
_CLOSERS = frozenset("\"'”’»›)]}」』】》〉）］｝〕")
# Characters that may open the next sentence before its first letter.
_OPENERS = frozenset("\"'“‘«‹([{「『【《〈（［｛〔¿¡")

# Words (lower case, without the final period) after which a period never ends a sentence:
# titles that are always followed by a name, and abbreviations that are always followed by more.
_NEVER_SPLIT_AFTER = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "mx",
        "dr",
        "prof",
        "sr",
        "sra",
        "srta",
        "jr",
        "st",
        "mt",
        "ft",
        "gen",
        "col",
        "lt",
        "sgt",
        "capt",
        "cmdr",
        "rev",
        "hon",
        "gov",
        "sen",
        "rep",
        "pres",
        "messrs",
        "mme",
        "mlle",
        "hr",
        "fr",
        "dra",
        "sig",
        "vs",
        "e.g",
        "i.e",
        "cf",
        "approx",
        "fig",
        "figs",
        "ca",
        "z.b",
        "d.h",
        "u.a",
        "bzw",
        "incl",
        "dept",
        "est",
        "vol",
        "ch",
    }
)
# Abbreviations that never end a sentence when a number follows ("No. 5", "p. 12").
_BEFORE_NUMBER = frozenset({"no", "nos", "nr", "art", "p", "pp", "tel", "ref", "op"})

_SPACE_CONTROLS = frozenset("\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u2029")
_KEEP_FORMAT = frozenset("\u200c\u200d")  # zero-width (non-)joiners shape some scripts and emoji
_WS_RUN = re.compile(r"\s+")
_WORD_NORM = re.compile(r"[^\w]+")


def clean_text(text: str) -> str:
    """Drop control and invisible format characters; line breaks and tabs become spaces."""
    out = []
    for ch in text:
        if ch in _SPACE_CONTROLS:
            out.append(" ")
            continue
        cat = unicodedata.category(ch)
        if cat == "Cc" or (cat == "Cf" and ch not in _KEEP_FORMAT):
            continue
        out.append(ch)
    return "".join(out)


def _has_word(sentence: str) -> bool:
    return any(ch.isalnum() for ch in sentence)


def _word_before(s: str, i: int, lo: int) -> str:
    """The non-space token that ends at index i (exclusive) and starts at lo or later."""
    start = i
    while start > lo and not s[start - 1].isspace():
        start -= 1
    word = s[start:i]
    while word and word[0] in _OPENERS:
        word = word[1:]
    return word


def _ends_sentence(s: str, lo: int, stop_start: int, stop_end: int, first: str) -> bool:
    """Does the Western stop run s[stop_start:stop_end] end a sentence?

    `lo` is where the current sentence began, `first` the first character of the next word.
    """
    if first.islower():
        return False  # "etc. and", "5 p.m. today", "Wow! she said" (caseless scripts never match)
    if s[stop_start:stop_end] != ".":
        return True
    word = _word_before(s, stop_start, lo)
    low = word.lower()
    if low in _NEVER_SPLIT_AFTER:
        return False
    if low in _BEFORE_NUMBER and first.isdigit():
        return False
    if len(word) == 1 and word.isalpha() and word.isupper():
        return False  # an initial: "J. Smith"
    return True


def _boundaries(s: str, final: bool) -> list[int]:
    """End offsets (exclusive) of the sentences in s whose end is certain.

    When `final` is False, stop at the first stop whose fate depends on text not seen yet.
    """
    ends: list[int] = []
    n = len(s)
    i = 0
    while i < n:
        if s[i] not in _STOPS:
            i += 1
            continue
        j = i
        while j < n and s[j] in _STOPS:
            j += 1
        k = j
        while k < n and s[k] in _CLOSERS:
            k += 1
        if k == n:  # the text ends in the stop: more stops or closers may still come
            if final:
                ends.append(n)
            break
        if any(ch in _CJK_STOPS for ch in s[i:j]):
            ends.append(k)
        elif s[k].isspace():
            m = k
            while m < n and s[m].isspace():
                m += 1
            while m < n and s[m] in _OPENERS:
                m += 1
            if m == n:  # only white space (and opening quotes) after the stop so far
                if final:
                    ends.append(k)
                break
            if _ends_sentence(s, ends[-1] if ends else 0, i, j, s[m]):
                ends.append(k)
        # else: a stop inside a token ("3.5", "e.g", "U.S.A", "Yahoo!s") ends nothing
        i = k
    return ends


def _tidy(piece: str) -> str:
    return _WS_RUN.sub(" ", piece).strip()


class SentenceSplitter:
    """Split text that arrives in pieces into sentences.

    `feed(piece)` returns the sentences completed so far (possibly none); `flush()` returns what is
    left and resets the splitter for the next text.
    """

    def __init__(self) -> None:
        self._buf = ""

    @property
    def pending(self) -> str:
        """Text fed but not yet handed out as a sentence."""
        return _tidy(self._buf)

    def feed(self, text_piece: str) -> list[str]:
        if not text_piece:
            return []
        self._buf += clean_text(text_piece)
        return self._take(final=False)

    def flush(self) -> list[str]:
        out = self._take(final=True)
        self._buf = ""
        return out

    def reset(self) -> None:
        self._buf = ""

    def _take(self, final: bool) -> list[str]:
        ends = _boundaries(self._buf, final)
        out: list[str] = []
        start = 0
        for end in ends:
            sentence = _tidy(self._buf[start:end])
            if _has_word(sentence):
                out.append(sentence)
            start = end
        self._buf = self._buf[start:]
        if final:
            rest = _tidy(self._buf)
            if _has_word(rest):
                out.append(rest)
            self._buf = ""
        return out


def split_sentences(text: str) -> list[str]:
    """Split a finished text into sentences; empty or blank text gives []."""
    if not text:
        return []
    splitter = SentenceSplitter()
    return splitter.feed(text) + splitter.flush()


_CLAUSE_END = frozenset(",;:") | _STOPS

# English words that begin a phrase: a long first clause may be said from before one of them
PHRASE_STARTS = frozenset(
    "to of for that which who because and but or in on at with from by when if so while after "
    "before until where as than".split()
)


def first_phrase(text: str, min_words: int = 4, max_words: int = 9) -> tuple[str, str] | None:
    """(its first phrase, the rest) when `text` begins with a clause longer than `max_words`
    words with no comma or stop in it: the phrase ends before the first word of PHRASE_STARTS
    that has at least `min_words` words before it (at most `max_words`) and `min_words` after it
    ("You can't answer this message" | "because the user ..."); None otherwise. The voice says
    the phrase first: the listener waits for its synthesis only, not the whole clause's."""
    words = text.split()
    clause = next((i + 1 for i, w in enumerate(words) if w[-1:] in _CLAUSE_END), len(words))
    if clause <= max_words:
        return None
    for j in range(min_words, min(max_words, len(words) - min_words) + 1):
        if norm_word(words[j]) in PHRASE_STARTS:
            return " ".join(words[:j]), " ".join(words[j:])
    return None


_JOINS_LEFT = frozenset(",;:.!?…)]}»”’、，。！？")


def join_parts(parts: list[str]) -> str:
    """The texts of an utterance's parts as one text: separated by a space, but none before a
    part that begins with punctuation that belongs to the word before it (the rest of a long
    turn after a commit can begin with ", wait ...": "Please, wait ..." not "Please , wait")."""
    out = ""
    for part in (p.strip() for p in parts):
        if not part:
            continue
        out = part if not out else out + ("" if part[0] in _JOINS_LEFT else " ") + part
    return out


def norm_word(word: str) -> str:
    """A word for comparing: lower case, without punctuation."""
    return _WORD_NORM.sub("", word.lower())


def common_prefix(a: list[str], b: list[str]) -> int:
    """How many words `a` and `b` begin with in common (compared as they are)."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def stable_words(
    before: list[str], now: list[str], *, min_words: int = 4, after_clause: int = 2
) -> int:
    """How many of the words `now` (the latest decode of speech still going on, after what was
    already spoken) can be given out, never to change. Two rules, the larger count wins:
      * agreement: the words two decodes in a row agree on (`before` is the previous one, of
        less audio) and that more words follow in `now`, cut back to their last clause end (a
        comma or a stop) when there is one; without one only when there are at least
        `min_words` of them;
      * a clause in `now` that ends in a comma or stop and has `after_clause` words after it:
        the recogniser heard past it, so it will not change it.
    Words are compared as they are (case and punctuation count)."""
    # (never the last word of `now`: the decoder may have guessed the end)
    agreed = common_prefix(before, now[:-1])
    n = 0
    for i in range(agreed - 1, -1, -1):
        if _ends_clause(now[i]):
            n = i + 1
            break
    if n == 0 and agreed >= min_words:
        n = agreed
    for i in range(len(now) - after_clause - 1, n - 1, -1):
        if _ends_clause(now[i]):
            return i + 1
    return n


def _ends_clause(word: str) -> bool:
    """A word that ends in a comma or stop, and is a word ("morning,") rather than initials or
    a number ("S.C.", "4.")."""
    body = word[:-1]
    return word[-1:] in _CLAUSE_END and "." not in body and sum(c.isalpha() for c in body) >= 2


def repeats(prefix: str, words: list[str], n: int = 3) -> bool:
    """Whether `words` begin by saying again (n words in a row, case and punctuation aside) what
    the end of `prefix` already says: a decoder given a forced prefix sometimes starts over."""
    norm = [w for w in map(norm_word, prefix.split()[-24:]) if w]
    head = [w for w in map(norm_word, words[:n]) if w]
    if len(head) < n:
        return False
    return any(norm[i : i + n] == head for i in range(len(norm) - n + 1))


# ---- runaway decodes ----------------------------------------------------------------------------

RUNAWAY_WORDS_PER_S = 4.5  # more words than this per second of audio: more than it can hold
RUNAWAY_MIN_S = 1.0  # (a shorter piece is counted as this long: "Thank you very much." in 0.6 s)
_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
# Number words of the languages Whisper is mostly asked to translate here (es, it, pt, fr, de,
# en): the words as spoken say a number with them or with digits. Not the articles that are
# also "one" (un, una, um, une, ein).
_NUMBER_WORDS = frozenset(
    "cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce veinte treinta cien "
    "ciento mil zero due tre quattro cinque sei sette otto nove dieci venti cento mille dois "
    "duas três quatro seis sete oito nove dez vinte cem deux trois quatre cinq six sept huit "
    "neuf dix vingt cent eins zwei drei vier fünf sechs sieben acht neun zehn zwanzig hundert "
    "tausend one two three four five six seven eight nine ten twenty hundred thousand".split()
)


def word_tokens(text: str) -> list[str]:
    """The words and numbers of `text`, lower case, without punctuation ("1,2,3" is three)."""
    return [t.lower() for t in _TOKEN.findall(text)]


def _repeat_run(tokens: list[str], max_unit: int = 8) -> int:
    """The most times a word or a phrase of up to `max_unit` words comes in a row in `tokens`."""
    best = 1
    for p in range(1, max_unit + 1):
        for i in range(len(tokens) - 2 * p + 1):
            k = 1
            while tokens[i + k * p : i + (k + 1) * p] == tokens[i : i + p]:
                k += 1
            best = max(best, k)
    return best


def _number_run(tokens: list[str]) -> int:
    """The longest run of numbers written in digits, one after the other, in `tokens`."""
    best = run = 0
    for t in tokens:
        run = run + 1 if t.isdigit() else 0
        best = max(best, run)
    return best


def _says_numbers(text: str) -> bool:
    return any(t.isdigit() or t in _NUMBER_WORDS for t in word_tokens(text))


def runaway(
    text: str,
    speech_s: float,
    source: str | Callable[[], str] | None = None,
    words_per_s: float = RUNAWAY_WORDS_PER_S,
) -> str | None:
    """Why a recogniser's `text` for `speech_s` seconds of audio is a runaway decode, not what
    was said, or None when it is not one:
      * "dense": more words (numbers count one each) than `words_per_s` per second of audio
        (at least RUNAWAY_MIN_S), more than any speaker says;
      * "repeated": a word or a phrase (2-8 words) three times in a row or more, unless the
        words as spoken (`source`, when known) repeat something three times too ("No, no, no");
      * "digits": numbers counted out of nothing: three numbers in a row or more when the words
        as spoken have no number (digits or a number word), or, the words as spoken not known
        (`source` None), eight or more in a row ("1,2,3,4,5,5,5,5,2"). A number that was said
        ("Marque 3", "1, 2, 3" read out, a phone number) is not one.
    `source`: the words as spoken of the same audio (a translation's transcription), or a
    function that gives them (called only when a rule needs them, at most once); None when there
    are none (a transcription is its own source: give None)."""
    tokens = word_tokens(text)
    if len(tokens) > words_per_s * max(speech_s, RUNAWAY_MIN_S):
        return "dense"
    repeated, numbers = _repeat_run(tokens) >= 3, _number_run(tokens)
    if not repeated and numbers < 3:
        return None
    if callable(source):
        source = source()
    if repeated and (source is None or _repeat_run(word_tokens(source)) < 3):
        return "repeated"
    if numbers >= 3 and (numbers >= 8 if source is None else not _says_numbers(source)):
        return "digits"
    return None
