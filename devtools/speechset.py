"""Real human Spanish speech from Debian's Asterisk voice prompts (es_MX G.722 audio, Spanish and
English texts), the pieces scripts/make_speech_set.py builds its set from, and scripts that lay
out recordings of their own (scripts/make_regression_set.py, scripts/long_turns.py) share:
reading and choosing the prompts, noise floors, babble, WAV and suite-TOML writing."""

from __future__ import annotations

import collections
import gzip
import io
import json
import logging
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SR, MARGIN = 16000, 1600  # MARGIN: the 0.1 s of silence kept (or added) around a prompt's speech
AUDIO_PKG, ES_PKG, EN_PKG = (
    "asterisk-core-sounds-es-g722",
    "asterisk-core-sounds-es",
    "asterisk-core-sounds-en",
)
ES_TXT = Path("/usr/share/doc", ES_PKG, "core-sounds-es.txt.gz")
EN_TXT = Path("/usr/share/doc", EN_PKG, "core-sounds-en.txt.gz")
MAX_PART, LEAD_S, TAIL_S, PAUSE_S = 40, 0.5, 1.0, (1.0, 1.6)
NOT_TRANSLATION = {  # the English prompt says something else than the Spanish one
    "conf-hasjoin",  # "Ya esta en la conferencia" / "is now in the conference"
    "conf-roll-callcomplete",  # "Rol de llamadas completo" / "Playback of the list ..."
    "followme/pls-hold-while-try",  # "... enlazar su llamada" / "... locate the person ..."
    "vm-forwardoptions",  # "dejar pendiente un mensaje" / "prepend a message"
    "vm-isonphone",  # "Se encuentra ocupada" / "is on the phone"
    "vm-login",
    "vm-newuser",  # "correo de voz" / "Comedian Mail"
    "vm-tohearenv",  # "las propiedades de este mensaje" / "the message envelope"
    "vm-tempgreetactive",  # "Sus saludos están ..." / "Your temporary greeting is ..."
}
# The audio says more or less than the transcript (checked with a Whisper transcription).
NOT_SAID = {"followme/options", "vm-invalid-password", "vm-mismatch", "vm-record-prepend"}
# Typos and missing accents of the Spanish transcripts (word -> word, then phrases).
SPELLING = dict(
    w.split(":")
    for w in (
        "ingese:ingrese nimbre:nombre numbre:nombre introdusca:introduzca defeto:defecto "
        "mesaje:mensaje entidade:entidades contrasenia:contraseña atras:atrás comprendi:comprendí "
        "autenticacion:autenticación busqueda:búsqueda buzon:buzón codigo:código "
        "comenzara:comenzará "
        "conexion:conexión contrasena:contraseña contrasenas:contraseñas mas:más estan:están "
        "demostracion:demostración despues:después estandar:estándar lider:líder logre:logré "
        "extension:extensión grabacion:grabación informacion:información intentare:intentaré "
        "introduccion:introducción invalida:inválida invalido:inválido numerico:numérico "
        "minimos:mínimos numero:número opcion:opción proximo:próximo sera:será util:útil "
        "rapidamente:rápidamente reproduccion:reproducción tecleo:tecleó telefonico:telefónico "
        "telefono:teléfono unica:única unira:unirá vacias:vacías valido:válido"
    ).split()
)
PHRASES = [
    ("paracambiar", "para cambiar"),
    ("En que", "¿En qué"),
    ("no se quien", "no sé quién"),
    ("Esta usted", "Está usted"),
    ("nadie esta", "nadie está"),
    ("Algo esta", "Algo está"),
]
FRAGMENT_ES = re.compile(
    r"^(o|y) |\b(de|del|el|la|para|a|que|hay|en|con|llama|la extensión"
    r"|conferencia número|cliente número|número de teléfono)\W*$"
)
FRAGMENT_EN = re.compile(r"\.\.\.|:$|^(has|is|other|users?|or|and|then) ")
KINDS = ["silence", "white", "room", "tones", "music", "babble"]
log = logging.getLogger("make_speech_set")


class Missing(Exception):
    """A Debian package the set is made from is not installed."""


@dataclass
class Prompt:
    id: str
    source: str
    reference: str
    clip: np.ndarray  # float32: MARGIN samples, the speech, MARGIN samples

    @property
    def speech_s(self) -> float:
        return (len(self.clip) - 2 * MARGIN) / SR


# ---- the prompts ---------------------------------------------------------------------------------


def read_transcripts(path: Path) -> dict[str, str]:
    """{prompt id: text} from "id: text" lines (UTF-8 or latin-1, ";" comments); the first line
    of an id wins (the Spanish file has "digits/0" twice)."""
    raw = gzip.decompress(path.read_bytes())
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = (line.partition(":") for line in text.splitlines() if not line.startswith(";"))
    return dict(reversed([(k.strip(), v.strip()) for k, sep, v in lines if sep and k.strip()]))


def clean(text: str) -> str:
    """The words said: notes in [], () or <> dropped, "*"/"#" read as star/pound, spaces tidied."""
    text = re.sub(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>", " ", text).replace("*", " star ")
    text = re.sub(r"\s+", " ", text.replace("#", " pound "))
    return re.sub(r" ([,.?!])", r"\1", text).strip()


def spell(text: str) -> str:
    """`text` with the SPELLING and PHRASES fixes (a capital first letter is kept)."""

    def fix(m: re.Match) -> str:
        word = SPELLING.get(m[0].lower(), m[0])
        return word[0].upper() + word[1:] if m[0][0].isupper() else word

    text = re.sub(r"\w+", fix, text)
    for old, new in PHRASES:
        text = text.replace(old, new)
    return text


def decode_g722(path: Path) -> np.ndarray:
    """A G.722 file (64 kbit/s, 16 kHz: two samples a byte) as float32 samples."""
    import G722

    data = path.read_bytes()
    pcm = np.frombuffer(G722.G722(SR, 64000, use_numpy=False).decode(data), dtype=np.int16)
    assert len(pcm) == 2 * len(data), f"{path}: {len(pcm)} samples from {len(data)} bytes"
    return pcm.astype(np.float32) / 32768


def db(x: np.ndarray, axis=None):
    """RMS level in dBFS."""
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64), axis=axis) + 1e-20)


def speech_bounds(x: np.ndarray) -> tuple[int, int] | None:
    """First and last sample of the 10 ms frames above -50 dBFS (silence is -80 dBFS), or None."""
    n = len(x) // 160
    loud = np.nonzero(db(x[: n * 160].reshape(n, 160), axis=1) > -50)[0]
    return (int(loud[0]) * 160, int(loud[-1] + 1) * 160) if len(loud) else None


def skip_reason(pid: str, source: str | None, ref: str, load, seen: set):
    """(why the prompt is not used or None, its audio); load() decodes the audio."""
    if pid.split("/")[0] in ("digits", "letters", "phonetic", "silence"):
        return "digits, letters, phonetic alphabet or silence", None
    if source is None:
        return "no Spanish transcript", None
    n_es, n_en = len(source.split()), len(ref.split())
    if not source or not ref:
        return ("tone or other non-speech" if not source else "no English reference"), None
    if all(len(w) == 1 for w in source.split()):
        return "spelled letters", None
    x = load()
    bounds = speech_bounds(x)
    dur = (bounds[1] - bounds[0]) / SR if bounds else 0.0
    return (
        "empty audio file"
        if not bounds
        else "too short (< 3 English or < 4 Spanish words, or < 1 s)"
        if n_en < 3 or n_es < 4 or dur < 1.0
        else "too long (> 20 s)"
        if dur > 20.0
        else "fragment (said before or after something else)"
        if FRAGMENT_ES.search(source.lower()) or FRAGMENT_EN.search(ref)
        else "English is not a translation of the Spanish"
        if pid in NOT_TRANSLATION or not 0.6 <= n_es / n_en <= 2.2
        else "transcript is not what is said"
        if pid in NOT_SAID
        else "implausible audio level"
        if not -35 < db(x[bounds[0] : bounds[1]]) < -8
        else "same Spanish text as an earlier prompt"
        if source.lower() in seen
        else None
    ), x


def choose_prompts() -> tuple[list[Prompt], collections.Counter]:
    """The usable prompts, sorted by id, and how many prompt files were skipped for each reason."""
    try:
        listing = subprocess.run(["dpkg-query", "-L", AUDIO_PKG], capture_output=True, text=True)
    except FileNotFoundError:  # not Debian
        listing = None
    files = [Path(p) for p in (listing.stdout if listing else "").split() if p.endswith(".g722")]
    if not files:
        raise Missing(f"the Debian package {AUDIO_PKG} is not installed")
    for pkg, txt in ((ES_PKG, ES_TXT), (EN_PKG, EN_TXT)):
        if not txt.is_file():
            raise Missing(f"the Debian package {pkg} is not installed (no {txt})")
    es, en = read_transcripts(ES_TXT), read_transcripts(EN_TXT)
    root = Path(os.path.commonpath(files))  # /usr/share/asterisk/sounds/es_MX_f_Allison
    skipped: collections.Counter = collections.Counter()
    chosen, seen = [], set()
    for pid in sorted(str(f.relative_to(root).with_suffix("")) for f in files):
        source = spell(clean(es[pid])) if pid in es else None
        reason, x = skip_reason(
            pid,
            source,
            clean(en.get(pid, "")),
            lambda pid=pid: decode_g722(root / f"{pid}.g722"),
            seen,
        )
        if reason:
            skipped[reason] += 1
            continue
        seen.add(source.lower())
        (a, b), clip = speech_bounds(x), np.zeros(len(x) + 2 * MARGIN, np.float32)
        clip[MARGIN : MARGIN + len(x)] = x  # pad, then cut MARGIN either side of the speech
        chosen.append(Prompt(pid, source, clean(en[pid]), clip[a : b + 2 * MARGIN].copy()))
    return chosen, skipped


# ---- sounds --------------------------------------------------------------------------------------


def at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """`x` scaled to an RMS of `dbfs`."""
    return (x * 10 ** ((dbfs - db(x)) / 20)).astype(np.float32)


def noise(kind: str, n: int, rng: np.random.Generator, dbfs: float) -> np.ndarray:
    """White noise, or room noise: a 1/f^1.5 spectrum (between pink and brown) from 40 Hz,
    falling faster above 3 kHz."""
    x = rng.standard_normal(n)
    if kind == "room":
        f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 40.0)
        x = np.fft.irfft(np.fft.rfft(x) * f**-0.75 / (1 + (f / 3000) ** 2), n)
    return at_level(x, dbfs)


def faded(x: np.ndarray, fade_s: float = 0.005) -> np.ndarray:
    """`x` with a linear fade in and out (no clicks)."""
    i = np.arange(len(x))
    return (x * np.minimum(1, np.minimum(i, i[::-1]) / (fade_s * SR))).astype(np.float32)


def tone(freqs, dur: float, amp: float = 0.2, fade_s: float = 0.005) -> np.ndarray:
    """A sum of sines (Hz) `dur` seconds long."""
    t = np.arange(round(dur * SR)) / SR
    return faded(sum(np.sin(2 * np.pi * f * t) for f in freqs) * amp / len(freqs), fade_s)


def tones(n: int, rng: np.random.Generator) -> np.ndarray:
    """Beeps, DTMF digits, call-progress tones (dial, ringback, busy) and sweeps, with gaps."""
    dtmf = [(r, c) for r in (697, 770, 852, 941) for c in (1209, 1336, 1477)]
    seq = lambda parts: np.concatenate(  # noqa: E731  (sound, silence after it in s) pairs
        [np.concatenate([x, np.zeros(int(g * SR), np.float32)]) for x, g in parts]
    )
    out = []
    while sum(map(len, out)) < n:
        kind = rng.integers(4)
        if kind == 0:
            x = seq(
                [
                    (tone([rng.uniform(350, 2500)], rng.uniform(0.1, 0.6)), 0.2)
                    for _ in range(rng.integers(1, 4))
                ]
            )
        elif kind == 1:
            x = seq(
                [
                    (tone(dtmf[rng.integers(12)], rng.uniform(0.08, 0.15)), rng.uniform(0.06, 0.12))
                    for _ in range(rng.integers(3, 11))
                ]
            )
        elif kind == 2:
            x = [
                seq([(tone([350, 440], rng.uniform(2, 4)), 0)]),
                seq([(tone([440, 480], 2.0), 4.0)] * 2),
                seq([(tone([480, 620], 0.5), 0.5)] * 4),
            ][rng.integers(3)]
        else:  # a logarithmic sweep, up or down
            dur, f0, f1 = rng.uniform(1, 3), rng.uniform(100, 300), rng.uniform(2000, 6000)
            f0, f1 = (f1, f0) if rng.random() < 0.5 else (f0, f1)
            t = np.arange(int(dur * SR)) / SR
            x = faded(
                0.2
                * np.sin(2 * np.pi * f0 * dur / math.log(f1 / f0) * ((f1 / f0) ** (t / dur) - 1))
            )
        out += [x, np.zeros(int(rng.uniform(0.3, 2.0) * SR), np.float32)]
    return np.concatenate(out)[:n]


def music(n: int, rng: np.random.Generator) -> np.ndarray:
    """A chord with harmonics each bar, a melody note each beat, a kick drum on beats 1 and 3, a
    hi-hat on the off-beats; at -20 dBFS."""
    beat, root = int(SR * 60 / rng.uniform(80, 140)), rng.integers(45, 57)
    steps = [[0, 7, 9, 5], [0, 5, 7, 5], [9, 5, 0, 7]][rng.integers(3)]
    bar, out = 4 * beat, np.zeros(n + 4 * beat, np.float32)
    hz = lambda m: 440 * 2 ** ((m - 69) / 12)  # noqa: E731  MIDI note to Hz
    env = lambda k: np.exp(-np.arange(k) / (0.4 * k))  # noqa: E731  a decay over k samples
    t = np.arange(int(0.15 * SR)) / SR
    kick = 0.5 * np.sin(2 * np.pi * (50 * t + 1.8 * (1 - np.exp(-t / 0.03)))) * np.exp(-t / 0.05)
    for i, pos in enumerate(range(0, n, bar)):
        chord = root + steps[i % 4] + np.array([0, 3 if steps[i % 4] == 9 else 4, 7, 12])
        for m in chord:
            out[pos : pos + bar] += sum(
                tone([hz(m) * k], bar / SR, 0.05 / k**1.5, 0.02) for k in range(1, 6)
            ) * env(bar)
        for b in range(pos, pos + bar, beat):
            out[b : b + beat] += tone([hz(rng.choice(chord) + 12)], beat / SR, 0.08) * env(beat)
            out[b : b + len(kick)] += kick if (b - pos) % (2 * beat) == 0 else 0
            hat = np.diff(rng.standard_normal(481)) * 0.05 * np.exp(-np.arange(480) / 100)
            out[b + beat // 2 : b + beat // 2 + 480] += hat
    return at_level(out[:n], -20)


def babble(
    n: int, pool: list[np.ndarray], rng: np.random.Generator, voices: int, avoid=None
) -> np.ndarray:
    """`voices` voices mixed, each a string of reversed clips picked from `pool`, from a random
    start with short gaps. avoid(index, start, end) -> True: do not put that clip there."""
    out = np.zeros(n, np.float32)
    for _ in range(voices):
        pos = -int(rng.integers(0, 3 * SR))
        while pos < n:
            i = next(
                (
                    i
                    for i in rng.integers(len(pool), size=20)
                    if not (avoid and avoid(i, pos, pos + len(pool[i])))
                ),
                None,
            )
            if i is None:
                pos += SR
                continue
            a, b, clip = max(pos, 0), min(pos + len(pool[i]), n), pool[i][::-1]
            out[a:b] += clip[a - pos : b - pos] if b > a else 0
            pos += len(clip) + int(rng.uniform(0.1, 0.6) * SR)
    return out


def english_voices(texts: list[str]) -> list[np.ndarray]:
    """English speech from espeak-ng (none if it is not installed), at 16 kHz."""
    import soundfile as sf
    import soxr

    if not shutil.which("espeak-ng"):
        log.warning("espeak-ng is not installed: the babble has Spanish voices only")
    out = []
    for text in texts if shutil.which("espeak-ng") else []:
        wav = subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", text],
            capture_output=True,
            check=True,
        ).stdout
        x, sr = sf.read(io.BytesIO(wav), dtype="float32")
        out.append(at_level(soxr.resample(x, sr, SR), -20))
    return out


# ---- the files -----------------------------------------------------------------------------------


def prompt_files(prompts: list[Prompt]):
    """(path, audio, [(prompt, start_s, end_s)]) of each prompt's own recording."""
    for p in prompts:
        yield (
            f"prompts/{re.sub(r'[^A-Za-z0-9_-]+', '-', p.id)}.wav",
            p.clip,
            [(p, MARGIN / SR, MARGIN / SR + p.speech_s)],
        )


def conversation_files(prompts: list[Prompt], seed: int):
    """(path, audio, [(prompt, start_s, end_s)]) of each conversation: the prompts in a shuffled
    order, in parts of at most MAX_PART, each part at three noise floors."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(prompts))
    parts = np.array_split(order, math.ceil(len(order) / MAX_PART))
    for k, part in enumerate(parts, 1):
        placed, pos = [], int(LEAD_S * SR)  # (index, speech start, speech end) in samples
        for i in part:
            placed.append((i, pos, pos + len(prompts[i].clip) - 2 * MARGIN))
            pos = placed[-1][2] + int(rng.uniform(*PAUSE_S) * SR)
        n = placed[-1][2] + int(TAIL_S * SR)
        speech = np.zeros(n, np.float32)
        for i, a, _ in placed:
            speech[a - MARGIN : a - MARGIN + len(prompts[i].clip)] += prompts[i].clip
        level = db(np.concatenate([speech[a:b] for _, a, b in placed]))
        noisy = {"quiet": noise("white", n, rng, -60), "room": noise("room", n, rng, -45)}
        if len(prompts) >= 3:  # babble: never a prompt while it is said in the foreground
            avoid = lambda j, s, e, placed=placed: any(  # noqa: E731
                i == j and s < b + MARGIN and a - MARGIN < e for i, a, b in placed
            )
            bab = babble(n, [p.clip for p in prompts], rng, 5, avoid)
            noisy["babble"] = noise("room", n, rng, -45) + at_level(bab, level - 15)
        said = [(prompts[i], a / SR, b / SR) for i, a, b in placed]
        for cond, floor in noisy.items():
            yield f"es_{cond}" + (f"_{k}" if len(parts) > 1 else "") + ".wav", speech + floor, said


def nonspeech_files(prompts: list[Prompt], minutes: float, seed: int):
    """(path, audio, None) of the non-speech files: all equally long (about 45 s), the kinds in
    turn, each with its own seed."""
    count = max(len(KINDS), round(minutes * 60 / 45))
    n = int(minutes * 60 / count * SR)
    voices = [p.clip for p in prompts] + english_voices([p.reference for p in prompts[:8]])
    levels = {"white": -60, "room": -45}
    for i in range(count):
        kind, rng = KINDS[i % len(KINDS)], np.random.default_rng([seed, i])
        x = (
            np.zeros(n, np.float32)
            if kind == "silence"
            else noise(kind, n, rng, levels[kind])
            if kind in levels
            else tones(n, rng)
            if kind == "tones"
            else music(n, rng)
            if kind == "music"
            else at_level(babble(n, voices, rng, int(rng.integers(4, 7))), -25)
        )
        floor = noise("white", n, rng, -60) if kind in ("tones", "music", "babble") else 0
        yield f"nonspeech/{kind}-{i // len(KINDS) + 1}.wav", x + floor, None


def write_wav(path: Path, x: np.ndarray) -> None:
    """16 kHz mono 16-bit PCM, rounded and clipped here, so every run writes the same bytes."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16), SR, "PCM_16")


def toml_string(s: str) -> str:
    """`s` as a TOML basic string (JSON strings are TOML's), its non-ASCII letters as they are."""
    return json.dumps(s, ensure_ascii=False)


def prompt_tables(said) -> list[str]:
    """The [[recording.prompt]] tables (lines) of a suite file's recording, one for each (prompt,
    start_s, end_s) of `said` (None: none)."""
    lines: list[str] = []
    for p, start, end in said or []:
        lines += [
            "[[recording.prompt]]",
            f"id = {toml_string(p.id)}",
            f"start_s = {start:.3f}",
            f"end_s = {end:.3f}",
            f"source = {toml_string(p.source)}",
            f"reference = {toml_string(p.reference)}",
        ]
    return lines


def recording_toml(path: str, said) -> str:
    """A [[recording]] table with a [[recording.prompt]] for each (prompt, start_s, end_s), or
    with speech = false when `said` is None."""
    q = toml_string
    lines = [
        "[[recording]]",
        f"path = {q(path)}",
        f"name = {q(Path(path).stem)}",
        'from = "es"',
        'to = "en"',
    ] + (["speech = false"] if said is None else [])
    lines += prompt_tables(said)
    return "\n".join(lines) + "\n\n"


# ---- the prompts as tests take them -------------------------------------------------------------

EN_DIR = Path("/usr/share/asterisk/sounds/en")


def read_gsm(path: Path) -> np.ndarray:
    """A raw GSM 6.10 prompt (8 kHz) as float32 at 16 kHz."""
    import av
    import soxr

    with av.open(str(path), format="gsm") as c:
        x = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return soxr.resample(x.astype(np.float32) / 32768, 8000, SR)


def asterisk_spanish(names: list[str]) -> dict[str, tuple[np.ndarray, str]]:
    """Spanish prompts by name: (16 kHz float32 speech with its margins, English reference)."""
    prompts, _ = choose_prompts()
    by_id = {p.id: p for p in prompts}
    return {n: (by_id[n].clip.astype(np.float32), by_id[n].reference) for n in names}


def asterisk_english(name: str) -> np.ndarray:
    """An English prompt (GSM 8 kHz) as 16 kHz float32, its speech with 0.1 s either side."""
    en = read_gsm(EN_DIR / f"{name}.gsm")
    a, b = speech_bounds(en)
    return en[max(0, a - MARGIN) : b + MARGIN]
