"""MkDocs hook: serve KaTeX from a local copy when one is installed, else from a CDN.

The pages load KaTeX (the math renderer) in the browser. ``mkdocs.yml`` names the CDN copy, which
needs internet access in the reader's browser only, never at build time. For a site that renders
math offline, install the npm package: ``npm install --no-save katex@0.16.47`` in the repository
root, or anywhere else with ``KATEX_DIST`` set to its ``dist`` folder. This hook then copies the
script, the style sheet and the fonts into ``site/assets/katex`` and points the pages there.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.katex_assets")

CDN_PREFIX = "https://unpkg.com/katex@"
LOCAL_DIR = "assets/katex"
COPIED = ("katex.min.js", "katex.min.css", "fonts")

_local_dist: Path | None = None


def _find_dist(config_dir: Path) -> Path | None:
    candidates = []
    if os.environ.get("KATEX_DIST"):
        candidates.append(Path(os.environ["KATEX_DIST"]))
    candidates.append(config_dir / "node_modules" / "katex" / "dist")
    for candidate in candidates:
        if all((candidate / name).exists() for name in COPIED):
            return candidate
    if os.environ.get("KATEX_DIST"):
        log.warning("KATEX_DIST=%s has no %s; using the CDN copy of KaTeX", os.environ["KATEX_DIST"], ", ".join(COPIED))
    return None


def _local_path(url: str) -> str:
    # https://unpkg.com/katex@0.16.47/dist/katex.min.js -> assets/katex/katex.min.js
    return f"{LOCAL_DIR}/{url.split('/dist/', 1)[1]}"


def on_config(config):
    global _local_dist
    _local_dist = _find_dist(Path(config.config_file_path).parent)
    if _local_dist is None:
        return config

    version = json.loads((_local_dist.parent / "package.json").read_text()).get("version", "unknown")
    log.info("KaTeX %s from %s is copied into the site", version, _local_dist)
    for key in ("extra_javascript", "extra_css"):
        entries = config[key]
        for position, entry in enumerate(entries):
            url = str(entry)
            if url.startswith(CDN_PREFIX):
                if hasattr(entry, "path"):
                    entry.path = _local_path(url)
                else:
                    entries[position] = _local_path(url)
    return config


def on_post_build(config):
    if _local_dist is None:
        return
    target = Path(config.site_dir) / LOCAL_DIR
    target.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        source = _local_dist / name
        if source.is_dir():
            shutil.copytree(source, target / name, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target / name)
