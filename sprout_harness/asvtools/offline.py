"""Make asv 0.6's published page work without internet access.

`asv publish` writes html/index.html that loads jQuery, flot (and plugins), stupidtable,
blueimp-md5 and bootstrap from CDNs. `install_assets()` installs the same libraries from
the npm registry (`tools/offline_assets/package.json` + lock, `npm ci`) into a git-ignored
cache (`.asv/offline_assets`) once; `make_offline()` copies the needed files into
`html/vendor/` and rewrites every CDN link in `html/*.html` to them (dropping the
`integrity` attributes, which pin the CDN's exact bytes). An unknown CDN link is an error,
so a new asv version cannot silently publish a page that needs the internet.

CLI: `python -m sprout_harness.asvtools.offline [--html html] [--cache DIR]`.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Relative to the repository root (the working directory of `make` and the CLI).
PACKAGE_DIR = Path("tools") / "offline_assets"
DEFAULT_CACHE = Path(".asv") / "offline_assets"
VENDOR = "vendor"


class OfflineAssetsError(RuntimeError):
    """The page cannot be made offline-capable; the message names the cause and the fix."""


@dataclass(frozen=True)
class Asset:
    """One CDN URL asv uses and the file of an npm package that replaces it."""

    url: str
    package: str
    file: str  # path inside the npm package
    extra_dirs: tuple[str, ...] = ()  # sibling dirs the file refers to (bootstrap's fonts)

    @property
    def local(self) -> str:
        return f"{VENDOR}/{self.package}/{self.file}"


# The URLs asv 0.6.6's www/index.html loads (checked against the installed asv).
ASSETS: tuple[Asset, ...] = (
    Asset("https://code.jquery.com/jquery-3.3.1.min.js", "jquery", "dist/jquery.min.js"),
    Asset("https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js", "flot", "jquery.flot.js"),
    Asset("https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js", "flot", "jquery.flot.time.js"),
    Asset(
        "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js",
        "flot",
        "jquery.flot.selection.js",
    ),
    Asset(
        "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js",
        "flot",
        "jquery.flot.categories.js",
    ),
    Asset(
        "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js",
        "flot-orderbars",
        "js/jquery.flot.orderBars.js",
    ),
    Asset(
        "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js",
        "stupid-table-plugin",
        "stupidtable.min.js",
    ),
    Asset("https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js", "blueimp-md5", "js/md5.min.js"),
    Asset(
        "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js", "bootstrap", "dist/js/bootstrap.min.js"
    ),
    Asset(
        "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css",
        "bootstrap",
        "dist/css/bootstrap.min.css",
        extra_dirs=("dist/fonts",),
    ),
)
_BY_URL = {a.url: a for a in ASSETS}

# A <script src=...> or <link href=...> tag pointing off-site.
_TAG = re.compile(r"<(script|link)\b[^>]*?\b(src|href)=\"(https?:)?//[^\"]+\"[^>]*>", re.IGNORECASE)
_URL = re.compile(r"\b(?:src|href)=\"((?:https?:)?//[^\"]+)\"", re.IGNORECASE)
_DROP_ATTRS = re.compile(r"\s+(integrity|crossorigin|referrerpolicy)=(\"[^\"]*\"|'[^']*'|\S+)", re.IGNORECASE)


def _fingerprint(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        if f.exists():
            h.update(f.read_bytes())
    return h.hexdigest()


def install_assets(cache: Path = DEFAULT_CACHE, package_dir: Path = PACKAGE_DIR) -> Path:
    """Install the npm packages into `cache` unless already there; return its node_modules."""
    spec = package_dir / "package.json"
    lock = package_dir / "package-lock.json"
    if not spec.exists():
        raise OfflineAssetsError(f"{spec} is missing: restore it from git (tools/offline_assets/package.json)")
    cache = cache.resolve()
    modules = cache / "node_modules"
    stamp = cache / ".installed"
    want = _fingerprint(spec, lock)
    if (
        stamp.exists()
        and stamp.read_text().strip() == want
        and all((modules / a.package / a.file).exists() for a in ASSETS)
    ):
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise OfflineAssetsError(
            "npm not found: it installs the page's jQuery/flot/bootstrap copies from the npm registry; "
            "install Node.js and npm (Debian: apt-get install npm)"
        )
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy2(spec, cache / "package.json")
    cmd = [npm, "install"]
    if lock.exists():
        shutil.copy2(lock, cache / "package-lock.json")
        cmd = [npm, "ci"]
    cmd += ["--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    proc = subprocess.run(cmd, cwd=cache, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        raise OfflineAssetsError(
            f"`{' '.join(cmd[:2])}` in {cache} failed (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-1500:]}\n"
            "check access to the npm registry (https://registry.npmjs.org) or its proxy settings"
        )
    missing = [str(modules / a.package / a.file) for a in ASSETS if not (modules / a.package / a.file).exists()]
    if missing:
        raise OfflineAssetsError(f"npm installed the packages but these files are missing: {missing}")
    stamp.write_text(want + "\n")
    return modules


def _copy_assets(modules: Path, html: Path) -> None:
    for a in ASSETS:
        src_pkg = modules / a.package
        dest = html / a.local
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src_pkg / a.file, dest)
        for d in a.extra_dirs:
            shutil.copytree(src_pkg / d, html / VENDOR / a.package / d, dirs_exist_ok=True)


def rewrite_html(text: str, page: str = "page") -> tuple[str, int]:
    """`text` with every known CDN tag pointing at `vendor/`; returns (new text, tags rewritten).

    Raises OfflineAssetsError on an off-site URL that has no local copy.
    """
    count = 0

    def fix(m: re.Match[str]) -> str:
        nonlocal count
        tag = m.group(0)
        url = _URL.search(tag).group(1)  # type: ignore[union-attr]
        asset = _BY_URL.get(url)
        if asset is None:
            raise OfflineAssetsError(
                f"{page} loads {url} from the internet and sprout has no local copy of it: add its npm "
                "package to tools/offline_assets/package.json and an Asset entry to "
                "sprout_harness/asvtools/offline.py (asv's page may have changed with a new asv version)"
            )
        count += 1
        tag = _DROP_ATTRS.sub("", tag.replace(url, asset.local))
        return tag

    return _TAG.sub(fix, text), count


def remaining_remote_urls(html: Path) -> list[str]:
    """Off-site script/stylesheet URLs still referenced by html/*.html (should be empty)."""
    found = []
    for page in sorted(html.glob("*.html")):
        for m in _TAG.finditer(page.read_text(encoding="utf-8")):
            found.append(f"{page.name}: {_URL.search(m.group(0)).group(1)}")  # type: ignore[union-attr]
    return found


HTML_README = (
    "This folder receives `asv publish` output (generated by `make bench`); it is ignored by git except this line.\n"
)


def make_offline(html: Path, cache: Path = DEFAULT_CACHE, package_dir: Path = PACKAGE_DIR) -> int:
    """Install (if needed) and copy the assets into `html`, rewrite its pages; return tags rewritten."""
    if not (html / "index.html").exists():
        raise OfflineAssetsError(f"{html / 'index.html'} does not exist: run `asv publish` first")
    modules = install_assets(cache, package_dir)
    _copy_assets(modules, html)
    total = 0
    for page in sorted(html.glob("*.html")):
        text = page.read_text(encoding="utf-8")
        new, n = rewrite_html(text, page.name)
        if n:
            page.write_text(new, encoding="utf-8")
        total += n
    left = remaining_remote_urls(html)
    if left:
        raise OfflineAssetsError(f"pages still load from the internet after rewriting: {left}")
    # asv publish empties html/; put back the one tracked file so the checkout stays clean.
    (html / "README.md").write_text(HTML_README, encoding="utf-8")
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", type=Path, default=Path("html"), help="asv's html_dir (default: html)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where npm installs the assets")
    ap.add_argument("--package-dir", type=Path, default=PACKAGE_DIR, help="holds package.json (+ lock)")
    args = ap.parse_args(argv)
    try:
        n = make_offline(args.html, args.cache, args.package_dir)
    except OfflineAssetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"offline page: {n} CDN link(s) rewritten to {args.html / VENDOR}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
