"""Real speech for tests and benchmarks: espeak-ng for other languages, the Piper voice for English.

Used by the tests and by scripts/ (make_suite_samples.py, bench_live.py, bench_recovery.py, ...).
Needs espeak-ng (Debian package espeak-ng) for `espeak`, the packaged Piper voice for
`piper_speak`.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

# Korean phrases that tests/fixtures/tiny-mt-ko-en (a tiny Marian model) was trained to translate
KO_PHRASES = [
    "안녕하세요.",
    "역이 어디에 있습니까?",
    "커피 한 잔 주세요.",
    "감사합니다.",
    "화장실이 어디에 있습니까?",
    "얼마입니까?",
]


def espeak(
    text: str, lang: str, path: Path, rate: int = 16000, pad_s: float = 0.5, speed: int = 120
) -> Path:
    """Speak `text` in `lang` with espeak-ng into a mono 16-bit WAV at `rate`, with silence
    around it."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (Debian package espeak-ng)")
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", lang, "-s", str(speed), "-w", str(raw), text], check=True)
    audio, sr = sf.read(raw, dtype="float32")
    raw.unlink()
    return _write(audio, sr, path, rate, pad_s)


def piper_speak(
    text: str, voice_dir: Path, path: Path, rate: int = 16000, pad_s: float = 0.5
) -> Path:
    """Speak English `text` with the packaged Piper voice into a mono 16-bit WAV at `rate`. The
    same text gives the same audio in every process: the voice's noise (VITS samples it) is
    seeded, so a test or a benchmark hears the same clip each run."""
    import onnxruntime
    from piper import PiperVoice

    onnxruntime.set_seed(0)  # read by the random ops as the voice loads

    onnx = next(Path(voice_dir).glob("*.onnx"))
    voice = PiperVoice.load(str(onnx))
    chunks = [c.audio_float_array for c in voice.synthesize(text)]
    return _write(np.concatenate(chunks), voice.config.sample_rate, path, rate, pad_s)


def concat(parts: list[Path], path: Path, gap_s: float = 1.0, rate: int = 16000) -> Path:
    """Join WAVs (all at `rate`) with `gap_s` of silence between them."""
    gap = np.zeros(int(gap_s * rate), dtype="float32")
    audio = []
    for p in parts:
        a, sr = sf.read(p, dtype="float32")
        if sr != rate:
            raise ValueError(f"{p} is at {sr} Hz, not {rate}")
        audio += [a, gap]
    sf.write(path, np.concatenate(audio[:-1]), rate, subtype="PCM_16")
    return path


def _write(audio: np.ndarray, sr: int, path: Path, rate: int, pad_s: float) -> Path:
    """`audio` (float, at `sr`) resampled to `rate` with `pad_s` of silence on both sides, as a
    mono 16-bit WAV."""
    if sr != rate:
        audio = soxr.resample(audio, sr, rate)
    pad = np.zeros(int(pad_s * rate), dtype="float32")
    sf.write(path, np.concatenate([pad, audio, pad]), rate, subtype="PCM_16")
    return path


# ---- speech in several languages in one recording (--from auto) ---------------------------------

# (language, text, English reference, a word the English translation must have): English spoken by
# the Piper voice, French and German by espeak-ng. Whisper base identifies these espeak-ng
# sentences (probability 0.7 .. 1.0); many others of espeak-ng French and German it takes for Thai,
# Latin or Yiddish (scripts/bench_langid.py measures how many), and translates many into nonsense
# ("zwei Fahrkarten nach München" -> "a small cat in the sea"): these keep a word of their meaning.
PHRASES = [
    ("en", "Where is the train station? I would like a cup of coffee.", "", "station"),
    ("en", "My passport is in the blue bag.", "", "passport"),
    ("fr", "Je voudrais un café, s'il vous plaît.", "I would like a coffee, please.", "coffee"),
    (
        "fr",
        "Excusez-moi, je cherche la gare.",
        "Excuse me, I am looking for the station.",
        "excuse",
    ),
    ("de", "Ich möchte einen Kaffee, bitte.", "I would like a coffee, please.", "coffee"),
    (
        "de",
        "Es tut mir leid, ich verstehe nicht.",
        "I am sorry, I do not understand.",
        "understand",
    ),
]


@dataclass
class Piece:
    """One utterance of a several-language recording."""

    id: str  # "<language>-<name>"
    language: str
    start_s: float  # where its speech is in the recording
    end_s: float
    source: str
    reference: str
    expect: str  # a word its English translation must have


def speak(language: str, text: str, path: Path, voice_dir: Path) -> Path:
    """`text` spoken into a 16 kHz WAV: English by the Piper voice, other languages by
    espeak-ng (0.5 s of silence around it)."""
    if language == "en":
        return piper_speak(text, voice_dir, path)
    return espeak(text, language, path)


def several_languages(
    pieces: list[tuple[Path, str, str, str, str]], out: Path, gap_s: float = 1.5
) -> list[Piece]:
    """One recording (`out`, 16 kHz mono) of WAVs (path, language, source, reference, expected
    word) with `gap_s` of silence between them, each WAV's speech found by its level; the
    pieces with where their speech is."""
    rate, gap = 16000, np.zeros(int(gap_s * 16000), dtype="float32")
    audio: list[np.ndarray] = []
    placed = []
    pos = 0
    for n, (wav, language, source, reference, expect) in enumerate(pieces):
        a, sr = sf.read(wav, dtype="float32")
        if a.ndim > 1:
            a = a.mean(axis=1)
        if sr != rate:
            a = soxr.resample(a, sr, rate)
        loud = np.flatnonzero(np.abs(a) > 0.01)
        first, last = (loud[0], loud[-1]) if len(loud) else (0, len(a))
        placed.append(
            Piece(
                f"{language}-{n + 1}-{Path(wav).stem}",
                language,
                round((pos + first) / rate, 3),
                round((pos + last) / rate, 3),
                source,
                reference,
                expect,
            )
        )
        audio += [a, gap]
        pos += len(a) + len(gap)
    sf.write(out, np.concatenate(audio[:-1]), rate, subtype="PCM_16")
    return placed


def suite_toml(wav: Path, pieces: list[Piece], source_lang: str = "auto") -> str:
    """A suite file (babelfish/evaluation/suite.py) of one several-language recording with its
    prompts."""

    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        "[[recording]]",
        f"path = {q(str(wav))}",
        f"name = {q(wav.stem)}",
        f"from = {q(source_lang)}",
        'to = "en"',
    ]
    for p in pieces:
        lines += [
            "[[recording.prompt]]",
            f"id = {q(p.id)}",
            f"start_s = {p.start_s}",
            f"end_s = {p.end_s}",
            f"source = {q(p.source)}",
            f"reference = {q(p.reference)}",
        ]
    return "\n".join(lines) + "\n"


# French and German sentences for espeak-ng, with English references, for
# scripts/bench_langid.py (written for it, not chosen by how well Whisper hears them).
ESPEAK_SENTENCES = {
    "fr": [
        ("Je voudrais un café, s'il vous plaît.", "I would like a coffee, please."),
        ("Où est la gare?", "Where is the train station?"),
        ("Merci beaucoup, madame.", "Thank you very much, madam."),
        ("Le train pour Paris part à huit heures.", "The train to Paris leaves at eight o'clock."),
        ("Combien coûte le billet?", "How much does the ticket cost?"),
        ("Je voudrais un croissant et un café au lait.", "I would like a croissant and a latte."),
        ("Excusez-moi, je cherche la gare.", "Excuse me, I am looking for the train station."),
        ("Pouvez-vous m'aider, s'il vous plaît?", "Can you help me, please?"),
        ("Je ne parle pas français.", "I do not speak French."),
        ("L'hôtel est à côté de la gare.", "The hotel is next to the train station."),
        ("Je voudrais réserver une table pour ce soir.", "I would like to book a table tonight."),
        ("Il fait très beau aujourd'hui.", "The weather is very nice today."),
        ("Nous voudrions deux billets pour Marseille.", "We would like two tickets to Marseille."),
        ("Je suis désolé, je ne comprends pas.", "I am sorry, I do not understand."),
        (
            "Bonjour madame, je voudrais une chambre pour deux nuits, s'il vous plaît.",
            "Hello madam, I would like a room for two nights, please.",
        ),
        (
            "Nous avons besoin d'un taxi pour aller à l'aéroport.",
            "We need a taxi to go to the airport.",
        ),
    ],
    "de": [
        ("Ich möchte einen Kaffee, bitte.", "I would like a coffee, please."),
        ("Wo ist der Bahnhof?", "Where is the train station?"),
        ("Vielen Dank.", "Thank you very much."),
        ("Der Zug nach Berlin fährt um acht Uhr.", "The train to Berlin leaves at eight o'clock."),
        ("Wie viel kostet die Fahrkarte?", "How much does the ticket cost?"),
        ("Ich brauche einen Arzt.", "I need a doctor."),
        (
            "Guten Tag, ich hätte gern ein Zimmer für zwei Nächte, bitte.",
            "Good day, I would like a room for two nights, please.",
        ),
        (
            "Entschuldigung, wo ist der Hauptbahnhof? Ich habe mich verlaufen.",
            "Excuse me, where is the main station? I am lost.",
        ),
        ("Ich spreche kein Deutsch.", "I do not speak German."),
        ("Können Sie mir bitte helfen?", "Can you help me, please?"),
        ("Das Wetter ist heute sehr schön.", "The weather is very nice today."),
        (
            "Ich möchte zwei Fahrkarten nach München kaufen.",
            "I would like to buy two tickets to Munich.",
        ),
        ("Es tut mir leid, ich verstehe nicht.", "I am sorry, I do not understand."),
        (
            "Wir möchten einen Tisch für heute Abend reservieren.",
            "We would like to book a table for tonight.",
        ),
        ("Das Zimmer ist sehr groß.", "The room is very big."),
        ("Wir brauchen ein Taxi zum Flughafen.", "We need a taxi to the airport."),
    ],
}
