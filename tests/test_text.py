"""Sentence splitting: babelfish.text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from babelfish.text import (
    SentenceSplitter,
    clean_text,
    join_parts,
    repeats,
    split_sentences,
    stable_words,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello world. How are you?", ["Hello world.", "How are you?"]),
        ("Stop! Really?! Yes.", ["Stop!", "Really?!", "Yes."]),
        ("No final stop", ["No final stop"]),
        ("Wait… We are late.", ["Wait…", "We are late."]),
        ("Well... I think so.", ["Well...", "I think so."]),
        (
            "안녕하세요. 역이 어디에 있습니까? 커피 한 잔 주세요.",
            ["안녕하세요.", "역이 어디에 있습니까?", "커피 한 잔 주세요."],
        ),
        ("你好。我很好！你呢？", ["你好。", "我很好！", "你呢？"]),
        ("감사합니다。안녕히 가세요！", ["감사합니다。", "안녕히 가세요！"]),
    ],
)
def test_basic_stops(text, expected):
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Mr. Smith met Dr. Lee. They talked.", ["Mr. Smith met Dr. Lee.", "They talked."]),
        ("Mrs. Kim and Prof. Park left.", ["Mrs. Kim and Prof. Park left."]),
        ("Bring fruit, e.g. Apples. And bread.", ["Bring fruit, e.g. Apples.", "And bread."]),
        ("Some drinks, i.e. coffee. Fine.", ["Some drinks, i.e. coffee.", "Fine."]),
        ("It costs 3.5 dollars. Pay now.", ["It costs 3.5 dollars.", "Pay now."]),
        ("Pi is 3.14159 or so", ["Pi is 3.14159 or so"]),
        ("Take bus No. 5 there. Then walk.", ["Take bus No. 5 there.", "Then walk."]),
        ("J. K. Rowling wrote it. Yes.", ["J. K. Rowling wrote it.", "Yes."]),
        ("We met at 5 p.m. and ate.", ["We met at 5 p.m. and ate."]),
        ("We met at 5 p.m. Then we ate.", ["We met at 5 p.m.", "Then we ate."]),
        ("Visit www.example.org today. Ok.", ["Visit www.example.org today.", "Ok."]),
    ],
)
def test_abbreviations_and_numbers(text, expected):
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("(It works.) Really?", ["(It works.)", "Really?"]),
        ("She asked “Why?” Nobody knew.", ["She asked “Why?”", "Nobody knew."]),
        ("「안녕。」 그리고 갔다。", ["「안녕。」", "그리고 갔다。"]),
        ('Done. "Next one" starts.', ["Done.", '"Next one" starts.']),
    ],
)
def test_quotes_and_brackets_stay_with_their_sentence(text, expected):
    assert split_sentences(text) == expected


def test_whitespace_and_control_characters():
    text = "  First\tline.\n\n\nSecond\r\n line!   Third\x00 one\x1b?  \u200b"
    assert split_sentences(text) == ["First line.", "Second line!", "Third one?"]
    assert clean_text("a\x00b\x07c\nd\u200be\ufeff") == "abc de"
    assert clean_text("👩\u200d💻") == "👩\u200d💻"  # joiners are kept


@pytest.mark.parametrize("text", ["", " ", "\n\t  \r\n", "\x00\x01", "...", " !! ?"])
def test_empty_or_wordless_input(text):
    assert split_sentences(text) == []


def test_splitter_streams_sentences_as_they_complete():
    sp = SentenceSplitter()
    assert sp.feed("Hello th") == []
    assert sp.feed("ere. How") == ["Hello there."]
    assert sp.feed(" are you") == []
    assert sp.pending == "How are you"
    assert sp.feed("? I am") == ["How are you?"]
    assert sp.flush() == ["I am"]
    assert sp.flush() == []
    assert sp.pending == ""


def test_splitter_waits_when_the_next_piece_decides():
    sp = SentenceSplitter()
    # "3." might be "3.5": nothing is emitted until the next character is known.
    assert sp.feed("It costs 3.") == []
    assert sp.feed("5 dollars. ") == []  # a lower-case word could still follow
    assert sp.feed("ok") == []
    assert sp.feed(" then. Bye.") == ["It costs 3.5 dollars. ok then."]
    assert sp.flush() == ["Bye."]
    # An abbreviation split across pieces.
    assert sp.feed("Ask Mr") == []
    assert sp.feed(". Kim. He") == ["Ask Mr. Kim."]
    # A closing quote arriving in the next piece stays with the sentence.
    assert sp.feed(' said "Go."') == []
    assert sp.feed('" Then') == ['He said "Go.""']
    assert sp.flush() == ["Then"]


def test_splitter_cjk_stop_needs_no_space():
    sp = SentenceSplitter()
    assert sp.feed("안녕하세요。") == []  # a closing bracket may still come
    assert sp.feed("역이") == ["안녕하세요。"]
    assert sp.feed(" 어디예요？커피") == ["역이 어디예요？"]
    assert sp.flush() == ["커피"]


def test_reset_drops_pending_text():
    sp = SentenceSplitter()
    sp.feed("half a sent")
    sp.reset()
    assert sp.flush() == []


_TEXTS = [
    "Mr. Smith paid 3.5 dollars, e.g. for tea. Then he left! Did he?",
    '안녕하세요. 역이 어디에 있습니까? "커피 한 잔 주세요." 감사합니다!',
    "你好。我很好！「你呢？」 Fine... ok. Wait… No. 5 is here. J. Doe.",
    "  spaced   out\n\ntext.  With\ttabs!  and lower. Upper?!  ",
]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_TEXTS), st.lists(st.integers(min_value=0, max_value=80), max_size=8))
def test_streaming_matches_whole_text(text, cuts):
    """However the text is cut into pieces, the splitter finds the same sentences."""
    points = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0] + points, points + [len(text)])]
    sp = SentenceSplitter()
    got = []
    for piece in pieces:
        got += sp.feed(piece)
    got += sp.flush()
    assert got == split_sentences(text)
    assert "".join(got).replace(" ", "") == clean_text(text).replace(" ", "").replace("\n", "")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_text_splits_without_losing_words(text):
    sentences = split_sentences(text)
    assert all(s and s == s.strip() and "  " not in s for s in sentences)
    words = "".join(ch for ch in clean_text(text) if ch.isalnum())
    assert "".join(ch for s in sentences for ch in s if ch.isalnum()) == words


# -- the stable prefix of a decode of speech still going on (Whisper route) --------------------


@pytest.mark.parametrize(
    "before, now, expected",
    [
        # a clause the decoder heard past (two more words after its comma) is stable at once
        ("", "Good morning, where is", 2),
        # a clause at the very end may be a guess at how it ends: not yet
        ("", "Good days!", 0),
        ("", "Good morning, where", 0),
        # two decodes agree on words that more words follow: to their last clause end ...
        ("Good morning, where", "Good morning, where is the", 2),
        # ... or all of them when there is none, if there are at least four
        ("I need a taxi", "I need a taxi for the", 4),
        ("I need a", "I need a taxi for", 0),
        # agreement on a whole decode is not enough: the last word may be the decoder's guess
        ("where is this?", "where is this?", 0),
        ("I have", "My passport is in", 0),
        ("", "", 0),
        # initials and numbers are not clause ends
        ("", "S.C. T.C. Parallel", 0),
        ("", "The C-4. of the moon", 0),
    ],
)
def test_stable_words(before, now, expected):
    assert stable_words(before.split(), now.split()) == expected


def test_repeats_spots_a_decoder_starting_over():
    prefix = "I want a coffee with milk."
    assert repeats(prefix, "I want a coffee with milk, please".split())
    assert repeats("Good morning, the restaurant is closed.", "the Restaurant is, closed".split())
    assert not repeats(prefix, "please, and where is".split())
    assert not repeats(prefix, "I want".split())  # too short to tell
    assert not repeats("", "I want a coffee".split())


def test_first_phrase_of_a_long_clause():
    from babelfish.text import first_phrase

    # a long clause with no comma: said from before a phrase's first word, 4-9 words in
    assert first_phrase(
        "Please note that the first three letters of the name of the person you want."
    ) == ("Please note that the first three letters", "of the name of the person you want.")
    assert first_phrase("You can't answer this message because the user has no button.") == (
        "You can't answer this message",
        "because the user has no button.",
    )
    # a clause short enough, or cut at a comma by the voice anyway: left whole
    assert first_phrase("Thank you very much for your patience.") is None
    assert first_phrase("Good morning, I would like to buy a ticket to the station.") is None
    # no phrase start in reach, or too little after it
    assert first_phrase("Mark one two three four five six seven eight nine ten eleven.") is None
    assert first_phrase("One two three four five six seven eight nine ten for me.") is None


@pytest.mark.parametrize(
    "parts, expected",
    [
        (
            ["To achieve this, you need the Internet. Please", ", wait while..."],
            "To achieve this, you need the Internet. Please, wait while...",
        ),
        (
            ["Good morning.", "Where is the train station?"],
            "Good morning. Where is the train station?",
        ),
        (["I need a taxi", "."], "I need a taxi."),
        (["", " Hello ", "", "there"], "Hello there"),
        (["Dijo", "«hola»"], "Dijo «hola»"),
        ([], ""),
    ],
)
def test_join_parts_puts_no_space_before_punctuation_that_ends_the_word_before(parts, expected):
    assert join_parts(parts) == expected
