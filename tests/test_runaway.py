"""No runaway output, ever, and short turns are not dropped (issue 25, items 3 and 4).

A runaway decode (text.runaway: more words than the audio can hold, a phrase over and over,
numbers counted out of nothing) is retried and otherwise dropped and counted
(`asr.dropped_runaway`); a word or two alone between silences is translated. On real Whisper
decodes of espeak-ng speech and through the whole pipeline (`babelfish replay`).
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from babelfish.engines import SAMPLE_RATE
from babelfish.engines.asr_whisper import WhisperASR
from babelfish.engines.whisper_model import WhisperOptions
from babelfish.text import RUNAWAY_WORDS_PER_S, runaway
from devtools.harness import load_report, replay_fast, write_config
from devtools.testspeech import espeak

# An espeak-ng Italian turn of three clauses (a greeting, a question about a price, thanks) with
# 0.4 s pauses: Silero cuts it into three utterances, and Whisper base decoding the price alone
# counts "1, 2, 3, 4, 3, 4, 1, 2, ..." out of nothing.
ITALIAN = ["Buongiorno.", "Quanto costa il biglietto?", "Grazie mille."]
GAP_S = 0.4
SHORT = {"Buenos días.": None, "Gracias.": "thank", "No.": "no", "Tres.": None}  # key words


# ---- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, speech_s, source, why",
    [
        # the Italian case, as the pipeline said it aloud before
        ("1,2,3,4,5,5,5,5,2,5,5,5,1,2,2,2,2,3,2,", 2.4, None, "dense"),
        ("1,2,3,4,3,4,1,2,1,2,1,1,2,1, 2,1,2,1,", 2.4, "Quanto costa io mi è to.", "dense"),
        ("1,2,3,4,5", 2.6, "Quanto costa il biglietto?", "digits"),
        ("1, 2, 3, 2, 1, 2, 1, 2, 3, 2", 2.6, "Quanto costa il biglietto?", "digits"),
        ("1 2 3 4 5 6 7 8", 3.0, None, "digits"),  # eight in a row: counted, whatever was said
        # a phrase three times in a row
        ("Good morning. Good morning. Good morning. Good afternoon.", 3.0, None, "repeated"),
        ("Thank you, thank you, thank you.", 3.0, "Gracias.", "repeated"),
        ("I'm going to do this, I'm going to do this, I'm going to do this", 6.0, "", "repeated"),
        ("Enjoy! Enjoy! Enjoy!", 2.0, None, "repeated"),
        ("Please wait. " * 3 + "Goodbye.", 4.0, None, "repeated"),
        # more words than the audio holds (a 0.8 s piece counts as 1 s)
        ("The quick brown fox jumps over the lazy dog again", 0.8, None, "dense"),
        (" ".join(["word"] * 10).replace("word", "a b", 5), 2.0, None, "dense"),
        # legitimate: what was said, however dense or repetitive
        ("No, no, no.", 1.2, "No, no, no.", None),
        ("Thank you, thank you, thank you.", 2.5, "Gracias, gracias, gracias.", None),
        ("Press 3.", 1.0, "Marque 3.", None),
        ("1, 2, 3", 1.5, "uno, dos, tres", None),
        ("1, 2, 3, 4, 5, 6, 7, 8, 9, 10", 4.0, "uno, dos, tres, cuatro, cinco, seis", None),
        ("Call 555 1234 now.", 2.0, "Llame al 555 1234.", None),
        ("Dial 5 5 5 1 2 3 4.", 2.5, "Marque cinco cinco cinco uno dos tres cuatro.", None),
        ("20 ml", 2.3, "Grazie mille.", None),
        ("Thank you very much.", 0.6, None, None),  # short piece: counted as 1 s
        # the densest real translations of the Asterisk prompts (references, and Whisper's)
        ("They have been carried away by monkeys", 2.09, None, None),
        ("Do you like to call each other in the background?", 2.41, None, None),
        ("I'm sorry I did not understand your response.", 2.68, None, None),
        ("Good morning. Where is the station? I want a coffee, please.", 3.0, None, None),
    ],
)
def test_the_runaway_rule(text, speech_s, source, why):
    assert runaway(text, speech_s, source) == why


def test_the_rule_asks_for_the_words_as_spoken_only_when_it_needs_them():
    asked = []

    def source():
        asked.append(1)
        return "Quanto costa il biglietto?"

    assert runaway("How much is the ticket?", 2.0, source) is None
    assert asked == []  # a plain text: no transcription made for it
    assert runaway("1, 2, 3, 4", 2.0, source) == "digits"
    assert asked == [1]
    assert runaway("a b c d e f g h i j", 2.0, source, words_per_s=6.0) is None
    assert runaway("a b c d e f g h i j", 2.0, source) == "dense"
    assert RUNAWAY_WORDS_PER_S == 4.5


# ---- real decodes --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def italian_turn(tmp_path_factory):
    """(the turn's WAV, [(start_s, end_s)] of its clauses): the three clauses with GAP_S of
    digital silence between and around them."""
    tmp = tmp_path_factory.mktemp("runaway")
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), np.float32)
    audio, spans, pos = [gap], [], len(gap)
    for i, clause in enumerate(ITALIAN):
        a, _ = sf.read(espeak(clause, "it", tmp / f"it{i}.wav", pad_s=0.0), dtype="float32")
        spans.append((pos / SAMPLE_RATE, (pos + len(a)) / SAMPLE_RATE))
        audio += [a, gap]
        pos += len(a) + len(gap)
    path = tmp / "it_turn.wav"
    sf.write(path, np.concatenate(audio), SAMPLE_RATE, subtype="PCM_16")
    return path, spans


def _piece(path, span, before=0.2, after=0.4) -> np.ndarray:
    """A clause as the pipeline cuts it: its pad before, its end silence after."""
    audio, _ = sf.read(path, dtype="int16")
    return audio[int((span[0] - before) * SAMPLE_RATE) : int((span[1] + after) * SAMPLE_RATE)]


# (pad before, silence after) of cuts where the decodes below run away
@pytest.mark.parametrize("edges", [(0.2, 0.4), (0.1, 0.3), (0.2, 0.3), (0.3, 0.4)])
def test_a_runaway_decode_is_dropped_and_named(whisper_base_dir, italian_turn, edges):
    """Beam 5 without fallback counts numbers for the price clause alone: dropped, and the reason
    is "runaway" (the ASR stage counts it as dropped_runaway)."""
    path, spans = italian_turn
    asr = WhisperASR(
        whisper_base_dir,
        WhisperOptions(
            language="it", task="translate", beam_size=5, rescue_beam_size=1, temperatures=(0.0,)
        ),
    )
    result = asr.decode(_piece(path, spans[1], *edges))
    attempts = asr.last_stats["attempts"]
    assert [a.get("runaway") for a in attempts] != [None], attempts  # the decode did run away
    assert result.text == ""
    assert asr.last_stats["rejected"] == "runaway"


def test_a_runaway_decode_is_retried_never_output(whisper_base_dir, italian_turn):
    """The default decoding (greedy, the rescue beam, a sampled retry): the attempt that runs
    away is not taken; the result is another attempt's text or nothing. (With a 0.2 s pad and
    0.3 s of silence after it, greedy decoding gives "1,2,3,4,5,5,5,5,1,2,1,2,1,1,2,1,3,...", the
    very text the pipeline used to speak.) Which cuts run away moves with the host's arithmetic
    (on an AVX2 host the 0.15 / 0.35 s cut does not): each cut that does is checked, and most of
    them must."""
    path, spans = italian_turn
    asr = WhisperASR(
        whisper_base_dir, WhisperOptions(language="it", task="translate", rescue_beam_size=5)
    )
    ran_away = 0
    for edges in [(0.2, 0.4), (0.1, 0.3), (0.15, 0.35), (0.2, 0.3)]:
        piece = _piece(path, spans[1], *edges)
        result = asr.decode(piece)
        attempts = asr.last_stats["attempts"]
        if not any(a.get("runaway") for a in attempts):
            print(f"{edges}: no attempt ran away: {attempts}")
            continue
        ran_away += 1
        assert len(attempts) > 1, (edges, attempts)  # retried
        assert runaway(result.text, len(piece) / SAMPLE_RATE) is None, (edges, result.text)
        assert not any(c.isdigit() for c in result.text), (edges, result.text)
    assert ran_away >= 3, ran_away


def test_pipeline_never_speaks_a_runaway(tmp_path, italian_turn):
    """`babelfish replay` of the turn: without the turn's context the price clause runs away on
    every attempt, and the report counts it (asr.dropped_runaway); with it (the default) it is
    retried as the continuation of the greeting. Never a runaway text either way."""
    path, _ = italian_turn
    for context in ("false", "true"):
        out = tmp_path / context
        out.mkdir()
        cfg = write_config(out, f'[pipeline]\nsource_lang = "it"\n[asr]\ncontext = {context}\n')
        r, report = replay_fast(out, path, cfg)
        assert r.returncode == 0, r.stderr
        rep = load_report(report)
        texts = [u["translated_text"] for u in rep["utterances"]]
        for u in rep["utterances"]:
            # (the audio decoded: the speech, its 0.2 s pad and 0.4 s of end silence)
            audio_s = u["speech_end_s"] - u["speech_start_s"] + 0.6
            assert runaway(u["translated_text"], audio_s) is None, texts
            assert not any(c.isdigit() for c in u["translated_text"]), texts
        dropped = rep["summary"]["dropped"]
        if context == "false":
            assert dropped.get("asr.dropped_runaway", 0) >= 1, (dropped, texts)
            assert "asr.dropped_runaway" in r.stdout
        else:
            assert any("how much" in t.lower() for t in texts), texts


# ---- short turns ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_turns(tmp_path_factory):
    """(WAV, said) of "Buenos días", "Gracias", "No", "Tres" (espeak-ng) alone between
    silences of 1.0-1.6 s: in digital silence, and over the quiet (-60 dBFS white) and room
    (-45 dBFS) floors that scripts/make_speech_set.py lays under its conversations."""
    tmp = tmp_path_factory.mktemp("short")
    rng = np.random.default_rng(3)
    audio, said, pos = [np.zeros(SAMPLE_RATE // 2, np.float32)], [], SAMPLE_RATE // 2
    for i, text in enumerate(SHORT):
        a, _ = sf.read(espeak(text, "es", tmp / f"s{i}.wav", pad_s=0.0), dtype="float32")
        a = a[slice(*_speech_bounds(a))]  # (espeak-ng's own silence around it off)
        gap = np.zeros(int(rng.uniform(1.0, 1.6) * SAMPLE_RATE), np.float32)
        said.append((text, pos / SAMPLE_RATE, (pos + len(a)) / SAMPLE_RATE))
        audio += [a, gap]
        pos += len(a) + len(gap)
    speech = np.concatenate(audio)
    path = tmp / "short_silent.wav"
    sf.write(path, speech, SAMPLE_RATE, subtype="PCM_16")
    out = {"silent": path}
    for floor, dbfs in (("quiet", -60), ("room", -45)):
        noise = rng.standard_normal(len(speech))
        if floor == "room":  # as make_speech_set.py: 1/f^1.5 from 40 Hz, falling above 3 kHz
            f = np.maximum(np.fft.rfftfreq(len(noise), 1 / SAMPLE_RATE), 40.0)
            noise = np.fft.irfft(np.fft.rfft(noise) * f**-0.75 / (1 + (f / 3000) ** 2), len(noise))
        noise *= 10 ** (dbfs / 20) / np.sqrt(np.mean(noise**2))
        path = tmp / f"short_{floor}.wav"
        sf.write(path, (speech + noise).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        out[floor] = path
    return out, said


def _speech_bounds(x: np.ndarray) -> tuple[int, int]:
    """First and last sample of the 10 ms frames above -50 dBFS."""
    n = len(x) // 160
    level = 10 * np.log10(np.mean(np.square(x[: n * 160].reshape(n, 160)), axis=1) + 1e-20)
    loud = np.nonzero(level > -50)[0]
    return int(loud[0]) * 160, int(loud[-1] + 1) * 160


def test_short_clean_turns_are_translated_by_the_engine(whisper_base_dir, short_turns):
    """Each word alone, cut as the pipeline may cut it (its pad before, its end silence after):
    words, not an unsure drop. A word alone has no context to make its decode sure ("Tres" with
    0.1 s before it: -1.54, under the -1.5 that longer speech must reach), and Whisper still
    hears speech in it (no-speech probability 0.01 .. 0.18)."""
    paths, said = short_turns
    asr = WhisperASR(
        whisper_base_dir, WhisperOptions(language="es", task="translate", rescue_beam_size=5)
    )
    for floor, path in paths.items():
        for text, start, end in said:
            for edges in [(0.2, 0.4), (0.1, 0.4), (0.3, 0.4), (0.2, 0.5)]:
                result = asr.decode(_piece(path, (start, end), *edges))
                key = SHORT[text]
                assert result.text, (floor, text, edges, asr.last_stats)
                assert key is None or key in result.text.lower(), (floor, text, result.text)


@pytest.mark.parametrize("floor", ["silent", "quiet", "room"])
def test_pipeline_translates_short_turns(tmp_path, short_turns, floor):
    paths, said = short_turns
    cfg = write_config(tmp_path)
    r, report = replay_fast(tmp_path, paths[floor], cfg)
    assert r.returncode == 0, r.stderr
    rep = load_report(report)
    heard = [u for u in rep["utterances"] if u["translated_text"]]
    assert len(heard) == len(said), [u["translated_text"] for u in rep["utterances"]]
    assert not any(k.startswith("asr.dropped") and v for k, v in rep["summary"]["dropped"].items())
    for (text, _, _), u in zip(said, heard):
        assert SHORT[text] is None or SHORT[text] in u["translated_text"].lower(), (text, u)
