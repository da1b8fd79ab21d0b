"""The site map: treatment site from an ICD-10-CM diagnosis code (SPEC 10).

The table is data (`sites.toml` beside this module); `--site-map FILE` replaces
it with a file of the same form:

    [sites]
    prostate = ["C61", "D07.5"]
    right-breast = ["C50.??1"]
    head-neck = ["C00-C14"]

Dots are ignored, `?` matches any one character, `X00-X14` expands to every
category between the two. A code takes the site of its longest matching
prefix (ties: the one with more literal characters).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Final

UNSPECIFIED: Final = "unspecified"
DEFAULT_PATH: Final = Path(__file__).with_name("sites.toml")

_PATTERN: Final = re.compile(r"[A-Z0-9?]{1,7}")
_RANGE: Final = re.compile(r"([A-Z]+)([0-9]+)-([A-Z]+)([0-9]+)")
_SITE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


class SiteMapError(Exception):
    """A site-map file that cannot be used; the message names the file and entry."""


@dataclass(frozen=True, slots=True)
class SiteMap:
    """Patterns sorted most specific first; `site_of` is cached per code."""

    patterns: tuple[tuple[str, str], ...]
    source: str
    _cache: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    def site_of(self, code: str) -> str | None:
        """The site of one diagnosis code, or None when no prefix matches."""
        found = self._cache.get(code, "")
        if found != "":
            return found
        normalized = code.replace(".", "").strip().upper()
        site = next(
            (site for pattern, site in self.patterns if _matches(pattern, normalized)), None
        )
        if len(self._cache) < 65536:
            self._cache[code] = site
        return site

    def first_site(self, codes: list[str]) -> str:
        """The site of the first code that has one, else `unspecified`."""
        for code in codes:
            site = self.site_of(code)
            if site is not None:
                return site
        return UNSPECIFIED


def _matches(pattern: str, code: str) -> bool:
    if len(code) < len(pattern):
        return False
    return all(p == "?" or p == c for p, c in zip(pattern, code, strict=False))


def load(path: str | Path | None = None) -> SiteMap:
    """Read a site-map file (the packaged default when `path` is None)."""
    source = Path(path) if path is not None else DEFAULT_PATH
    try:
        doc = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SiteMapError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SiteMapError(f"{source}: not a TOML file: {exc}") from None
    return from_table(doc.get("sites"), str(source))


def from_table(table: object, source: str = "<table>") -> SiteMap:
    """Build a site map from the `[sites]` table: site -> list of prefixes."""
    if not isinstance(table, dict) or not table:
        raise SiteMapError(f"{source}: needs a [sites] table: site = [prefixes]")
    owner: dict[str, str] = {}
    for site, prefixes in table.items():
        if not _SITE.fullmatch(site):
            raise SiteMapError(f"{source}: site {site!r}: use lower-case letters, digits and -")
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
            raise SiteMapError(f"{source}: site {site!r}: expected a list of code prefixes")
        for entry in prefixes:
            for pattern in _expand(entry, site, source):
                if owner.get(pattern, site) != site:
                    raise SiteMapError(
                        f"{source}: prefix {entry!r} is under both {owner[pattern]!r} and {site!r}"
                    )
                owner[pattern] = site
    ordered = sorted(owner.items(), key=lambda item: _specificity(item[0]), reverse=True)
    return SiteMap(tuple(ordered), source)


def _specificity(pattern: str) -> tuple[int, int]:
    return (len(pattern), len(pattern) - pattern.count("?"))


def _expand(entry: str, site: str, source: str) -> list[str]:
    text = entry.replace(".", "").strip().upper()
    ranged = _RANGE.fullmatch(text)
    if ranged:
        letters, low, letters_to, high = ranged.groups()
        if letters != letters_to or len(low) != len(high) or int(low) > int(high):
            raise SiteMapError(f"{source}: site {site!r}: bad range {entry!r}")
        width = len(low)
        return [f"{letters}{n:0{width}d}" for n in range(int(low), int(high) + 1)]
    if not _PATTERN.fullmatch(text) or not text[0].isalpha():
        raise SiteMapError(f"{source}: site {site!r}: bad code prefix {entry!r}")
    return [text]


@lru_cache(maxsize=1)
def default() -> SiteMap:
    return load(None)
