#!/usr/bin/env python3
"""Make the audio of the regression suite (samples/regression/suite.toml) and its suite file.

    .venv/bin/python scripts/make_regression_set.py [--out samples/regression] [--check]

The WAVs (16 kHz mono 16-bit, the same bytes for the same command) go to OUT/audio/, which git
ignores; OUT/suite.toml, committed, names them with what is said in each and where. --check
writes no file: exit 1 when the committed suite.toml differs from what this script makes (the
WAVs' timings would not match it), 0 when it matches.

Made from Debian packages (scripts/make_speech_set.py reads them), espeak-ng and the packaged
Piper voice (devtools/testspeech.py):
  real human speech (Asterisk's es_MX prompts):
    es_quiet, es_room          20 prompts as a conversation, 1.0-1.6 s apart, white noise at
                               -60 dBFS / room noise at -45 dBFS (make_speech_set's conversations)
    es_short_silence, _room    short real turns (0.4-2 s: "Gracias", "Hola mundo", "No", numbers,
                               days), 1.5-2 s apart, in digital silence / room noise at -45 dBFS
    es_long                    long menu prompts (directory, voicemail; 9-25 s), 1.5 s apart
    es_monologue_1, _2         consecutive prompts (id order) joined by 0.2-0.3 s pauses, one
                               long turn of 40-60 s; its prompts carry their references and it
                               is a document (`document = true`: also scored as a whole, its
                               prompts' references joined, and timed as one turn)
  other voices: espeak-ng (120 words/min) in es, it, pt, fr, de, three sentences 1.5 s apart, clean
    (digital silence) and over room noise (-45 dBFS); an Italian turn of three clauses with 0.4 s
    pauses, a short Portuguese turn, "Buenos días" alone (each once gave a runaway output); the
    Piper English voice (--from en --to en)
  non-speech: make_speech_set's non-speech set (10 min: silence, noise floors, tones, music,
    babble), `pace = "fast"` (no latency to judge, and 10 min of wall time saved)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from devtools import speechset as mss

REPO = Path(__file__).resolve().parent.parent
SR, MARGIN = mss.SR, mss.MARGIN
SEED = 0
CONVERSATION_PROMPTS = 20
NONSPEECH_MINUTES = 10.0
# (prompt id, what is said, with the accents the transcripts lack): short real turns
SHORT = [
    ("auth-thankyou", "Gracias."),
    ("hello-world", "¡Hola mundo!"),
    ("vm-no", "No."),
    ("digits/7", "Siete."),
    ("digits/15", "Quince."),
    ("digits/20", "Veinte."),
    ("digits/day-1", "Lunes."),
    ("digits/day-5", "Viernes."),
    ("digits/day-6", "Sábado."),
    ("digits/today", "Hoy."),
    ("digits/tomorrow", "Mañana."),
    ("digits/yesterday", "Ayer."),
    ("privacy-thankyou", "Muchas gracias."),
    ("vm-goodbye", "Hasta pronto."),
    ("vm-deleted", "Mensaje borrado."),
    ("vm-nomore", "No hay mensajes."),
    ("vm-incorrect", "Entrada incorrecta."),
    ("agent-loggedoff", "Agente desconectado."),
    ("digits/mon-4", "Mayo."),
    ("minutes", "Minutos."),
]
LONG = ["dir-intro", "vm-msginstruct", "vm-opts-full", "demo-echotest", "tt-allbusy"]
MONOLOGUE_S = (40.0, 60.0)  # a monologue: consecutive prompts until at least 40 s, at most 60 s
MONOLOGUE_FROM = ["conf-", "vm-"]  # where each starts (the first usable prompt from there on)
# (language, [(what is said, its English reference)]): espeak-ng's "short conversations"
ESPEAK = [
    (
        "es",
        [
            ("¿Dónde está la estación de tren?", "Where is the train station?"),
            ("Mi pasaporte está en el hotel.", "My passport is in the hotel."),
            ("Quiero un café con leche, por favor.", "I want a coffee with milk, please."),
        ],
    ),
    (
        "it",
        [
            ("Dov'è la stazione?", "Where is the station?"),
            ("Vorrei un caffè, per favore.", "I would like a coffee, please."),
            ("Il mio passaporto è in albergo.", "My passport is in the hotel."),
        ],
    ),
    (
        "pt",
        [
            ("Onde fica a estação?", "Where is the station?"),
            ("Eu queria um café, por favor.", "I would like a coffee, please."),
            ("O meu passaporte está no hotel.", "My passport is in the hotel."),
        ],
    ),
    (
        "fr",
        [
            ("Je voudrais un café, s'il vous plaît.", "I would like a coffee, please."),
            ("Excusez-moi, je cherche la gare.", "Excuse me, I am looking for the station."),
            ("Mon passeport est à l'hôtel.", "My passport is at the hotel."),
        ],
    ),
    (
        "de",
        [
            ("Ich möchte einen Kaffee, bitte.", "I would like a coffee, please."),
            ("Es tut mir leid, ich verstehe nicht.", "I am sorry, I do not understand."),
            ("Wo ist der Bahnhof?", "Where is the train station?"),
        ],
    ),
]
# single turns that once ran away: (name, language, [(clause, reference)], pause between clauses)
TURNS = [
    (
        "it_three_clauses",
        "it",
        [
            ("Buongiorno", "Good morning"),
            ("quanto costa un biglietto per Roma?", "how much is a ticket to Rome?"),
            ("Grazie mille.", "Thank you very much."),
        ],
        0.4,
    ),
    ("pt_short_turn", "pt", [("Bom dia, tudo bem?", "Good morning, how are you?")], 0.0),
    ("es_buenos_dias", "es", [("Buenos días.", "Good morning.")], 0.0),
]
# English by the Piper voice, --from en --to en (the only target with a voice here): the
# reference is what is said
PIPER = [
    "Where is the train station?",
    "I would like a cup of coffee, please.",
    "My passport is in the hotel.",
]


# ---- clips ---------------------------------------------------------------------------------------


def sound_root() -> Path:
    """The folder of the es_MX G.722 prompts (raises mss.Missing without the package)."""
    r = subprocess.run(["dpkg-query", "-L", mss.AUDIO_PKG], capture_output=True, text=True)
    files = [p for p in r.stdout.split() if p.endswith(".g722")]
    if not files:
        raise mss.Missing(f"the Debian package {mss.AUDIO_PKG} is not installed")
    return Path(os.path.commonpath(files))


def as_prompt(pid: str, source: str, reference: str, x: np.ndarray) -> mss.Prompt:
    """A Prompt whose clip is the speech of `x` (frames above -50 dBFS) with MARGIN either side."""
    bounds = mss.speech_bounds(x)
    if bounds is None:
        raise SystemExit(f"make_regression_set: no speech in {pid}")
    a, b = bounds
    clip = np.zeros(b - a + 2 * MARGIN, np.float32)
    clip[MARGIN:-MARGIN] = x[a:b]
    return mss.Prompt(pid, source, reference, clip)


def asterisk(pid: str, source: str | None = None) -> mss.Prompt:
    """One Asterisk prompt by id, with its (spelling-fixed) Spanish text and English reference."""
    es, en = mss.read_transcripts(mss.ES_TXT), mss.read_transcripts(mss.EN_TXT)
    src = source or mss.spell(mss.clean(es[pid]))
    return as_prompt(pid, src, mss.clean(en[pid]), mss.decode_g722(sound_root() / f"{pid}.g722"))


def voice(lang: str, text: str, tmp: Path, n: int) -> np.ndarray:
    """`text` spoken by espeak-ng (or, for "en", the packaged Piper voice) at 16 kHz."""
    import soundfile as sf

    from devtools.testspeech import espeak, piper_speak

    path = tmp / f"{lang}-{n}.wav"
    if lang == "en":
        piper_speak(text, REPO / "models" / "piper-en_US-joe-medium", path, pad_s=0.2)
    else:
        espeak(text, lang, path, pad_s=0.2)
    x, sr = sf.read(path, dtype="float32")
    assert sr == SR
    return x


def lay_out(prompts, pauses, floor: str, rng, lead_s: float = mss.LEAD_S):
    """(audio, [(prompt, start_s, end_s)]): the prompts' clips one after another, `pauses[i]`
    seconds of floor between the speech of prompt i and i+1, over `floor`: "silence" (digital
    zeros), "quiet" (white noise, -60 dBFS) or "room" (room noise, -45 dBFS)."""
    placed, pos = [], int(lead_s * SR)
    for i, p in enumerate(prompts):
        placed.append((p, pos, pos + len(p.clip) - 2 * MARGIN))
        if i < len(pauses):
            pos = placed[-1][2] + int(pauses[i] * SR)
    n = placed[-1][2] + int(mss.TAIL_S * SR)
    x = np.zeros(n, np.float32)
    for p, a, _ in placed:
        x[a - MARGIN : a - MARGIN + len(p.clip)] += p.clip
    if floor == "quiet":
        x += mss.noise("white", n, rng, -60)
    elif floor == "room":
        x += mss.noise("room", n, rng, -45)
    return x, [(p, a / SR, b / SR) for p, a, b in placed]


# ---- the recordings ------------------------------------------------------------------------------


def recordings(tmp: Path):
    """(name, from, to, pace, audio, said) of every recording, in the suite's order; `said` is
    None for a recording without speech."""
    prompts, _ = mss.choose_prompts()
    rng = np.random.default_rng(SEED)
    pick = sorted(rng.choice(len(prompts), CONVERSATION_PROMPTS, replace=False))
    for rel, x, said in mss.conversation_files([prompts[i] for i in pick], SEED):
        name = Path(rel).stem
        if name in ("es_quiet", "es_room"):
            yield name, "es", "en", None, x, said
    short = [asterisk(pid, src) for pid, src in SHORT]
    for floor in ("silence", "room"):
        rng = np.random.default_rng([SEED, 1, floor == "room"])
        x, said = lay_out(short, rng.uniform(1.5, 2.0, len(short)), floor, rng)
        yield f"es_short_{floor}", "es", "en", None, x, said
    rng = np.random.default_rng([SEED, 2])
    x, said = lay_out([asterisk(pid) for pid in LONG], [1.5] * len(LONG), "quiet", rng)
    yield "es_long", "es", "en", None, x, said
    for k, start in enumerate(MONOLOGUE_FROM, 1):
        i = next(i for i, p in enumerate(prompts) if p.id >= start)
        part = []
        while sum(p.speech_s for p in part) < MONOLOGUE_S[0]:
            if prompts[i].speech_s + sum(p.speech_s for p in part) <= MONOLOGUE_S[1]:
                part.append(prompts[i])
            i += 1
        rng = np.random.default_rng([SEED, 3, k])
        x, said = lay_out(part, rng.uniform(0.2, 0.3, len(part)), "quiet", rng)
        yield f"es_monologue_{k}", "es", "en", None, x, said
    n = 0
    for lang, sentences in ESPEAK:
        clips = []
        for j, (text, ref) in enumerate(sentences, 1):
            n += 1
            clips.append(as_prompt(f"{lang}-{j}", text, ref, voice(lang, text, tmp, n)))
        for floor in ("silence", "room"):
            rng = np.random.default_rng([SEED, 4, n, floor == "room"])
            x, said = lay_out(clips, [1.5] * len(clips), floor, rng)
            yield (
                f"{lang}_espeak_{'clean' if floor == 'silence' else 'noisy'}",
                lang,
                "en",
                None,
                x,
                said,
            )
    for name, lang, clauses, pause in TURNS:
        clips = []
        for j, (text, ref) in enumerate(clauses, 1):
            n += 1
            clips.append(as_prompt(f"{name}-{j}", text, ref, voice(lang, text, tmp, n)))
        x, said = lay_out(clips, [pause] * len(clips), "silence", rng)
        yield name, lang, "en", None, x, said
    clips = []
    for j, text in enumerate(PIPER, 1):
        n += 1
        clips.append(as_prompt(f"en-{j}", text, text, voice("en", text, tmp, n)))
    x, said = lay_out(clips, [1.5] * len(clips), "silence", rng)
    yield "en_piper", "en", "en", None, x, said
    for rel, x, _ in mss.nonspeech_files(prompts, NONSPEECH_MINUTES, SEED):
        yield f"nonspeech_{Path(rel).stem}", "es", "en", "fast", x, None


def recording_toml(name: str, src: str, dst: str, pace: str | None, seconds: float, said) -> str:
    """A [[recording]] table of the suite file, with a [[recording.prompt]] for each (prompt,
    start_s, end_s) or speech = false when `said` is None."""
    q = mss.toml_string
    lines = [
        "[[recording]]",
        f"name = {q(name)}",
        f"path = {q(f'audio/{name}.wav')}  # {seconds:.1f} s",
        f"from = {q(src)}",
        f"to = {q(dst)}",
    ]
    lines += [f"pace = {q(pace)}"] if pace else []
    lines += ["speech = false"] if said is None else []
    lines += ["document = true"] if name.startswith("es_monologue") else []
    lines += mss.prompt_tables(said)
    return "\n".join(lines) + "\n\n"


HEAD = """\
# The regression suite: `babelfish suite` (or scripts/regress.sh) replays it and compares the
# report with baseline.json. Made by scripts/make_regression_set.py, which also writes the WAVs
# (audio/, not committed: the same bytes from the same Debian packages and voices). Real speech:
# Debian's asterisk-core-sounds-es-g722 (Allison Smith, es_MX, CC-BY-SA-3.0), texts from
# asterisk-core-sounds-es and -en; other voices: espeak-ng and the packaged Piper voice.
# {minutes:.1f} min of audio in {count} recordings ({speech:.1f} min replayed in real time).

"""


def make(out: Path, write_audio: bool = True) -> str:
    """Make the recordings (into out/audio/ when write_audio) and return the suite file's text."""
    tables, total, realtime, count = "", 0.0, 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, src, dst, pace, x, said in recordings(Path(tmp)):
            seconds = len(x) / SR
            if write_audio:
                mss.write_wav(out / "audio" / f"{name}.wav", x)
            tables += recording_toml(name, src, dst, pace, seconds, said)
            total, count = total + seconds, count + 1
            realtime += 0 if pace == "fast" else seconds
            print(f"  {name}: {seconds:.1f} s" + (f", {len(said)} prompts" if said else ""))
    return (
        HEAD.format(minutes=total / 60, count=count, speech=realtime / 60) + tables.rstrip() + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "samples" / "regression")
    ap.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when OUT/suite.toml differs from what this script makes",
    )
    args = ap.parse_args(argv)
    try:
        text = make(args.out, write_audio=not args.check)
    except (mss.Missing, ImportError, RuntimeError) as e:
        print(f"make_regression_set: error: {e} (run scripts/setup.sh --dev)", file=sys.stderr)
        return 2
    suite = args.out / "suite.toml"
    if args.check:
        old = suite.read_text(encoding="utf-8") if suite.is_file() else ""
        print(f"{suite}: " + ("matches" if old == text else "DIFFERS from what the script makes"))
        return 0 if old == text else 1
    suite.write_text(text, encoding="utf-8")
    print(f"{suite}: written; audio in {args.out / 'audio'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
