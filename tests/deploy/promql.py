"""Reading the PromQL of the dashboard and the rule files, for the tests.

`selectors` finds the series selectors of an expression (metric name plus its
label matchers) without a full parser: enough to ask Prometheus whether each
series an expression reads exists, and to check the names against what the
worker exports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "stream-app.json"
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"

_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
}
_KEYWORDS = {"and", "or", "unless", "bool", "inf", "nan", "offset", "atan2"}
_CLOSING = {"(": ")", "[": "]", "{": "}"}

# Template variables of the dashboard, as the tests resolve them.
VARIABLES = {
    "$__rate_interval": "1m",
    "${job}": "stream-app",
    "$job": "stream-app",
    "${consumergroup}": "stream-app",
    "$consumergroup": "stream-app",
}


def _skip_string(expr: str, i: int) -> int:
    quote = expr[i]
    i += 1
    while i < len(expr) and expr[i] != quote:
        i += 2 if expr[i] == "\\" and quote != "`" else 1
    return i + 1


def _skip_group(expr: str, i: int) -> int:
    """From an opening bracket to just past its closing one."""
    depth = 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            i = _skip_string(expr, i)
            continue
        if c in _CLOSING:
            depth += 1
        elif c in _CLOSING.values():
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced brackets in {expr!r}")


def selectors(expr: str) -> list[str]:
    """The series selectors of a PromQL expression, e.g. 'up{job="x"}'."""
    found: list[str] = []
    i = 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            i = _skip_string(expr, i)
        elif c in "[{":  # a range or a name-less selector
            i = _skip_group(expr, i)
        elif c.isdigit() or (c == "." and expr[i + 1 : i + 2].isdigit()):
            while i < len(expr) and (expr[i].isalnum() or expr[i] in "._"):
                i += 1
        elif c.isalpha() or c in "_:":
            match = _IDENT.match(expr, i)
            assert match is not None
            word, end = match.group(), match.end()
            after = end
            while after < len(expr) and expr[after].isspace():
                after += 1
            following = expr[after : after + 1]
            if word in _GROUPING:
                i = _skip_group(expr, after) if following == "(" else end
            elif word == "offset":  # its duration follows
                i = after
                while i < len(expr) and (expr[i].isalnum() or expr[i] == "-"):
                    i += 1
            elif following == "(" or word in _AGGREGATIONS or word.lower() in _KEYWORDS:
                i = end
            elif expr[end : end + 1] == "{":
                close = _skip_group(expr, end)
                found.append(expr[i:close])
                i = close
            else:
                found.append(word)
                i = end
        else:
            i += 1
    return found


def metric_name(selector: str) -> str:
    return selector.split("{", 1)[0]


def resolve(expr: str) -> str:
    """The expression with the dashboard's template variables filled in."""
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    return expr


@dataclass(frozen=True)
class Query:
    where: str  # "dashboard: <panel> (A)" or "rules: <alert>"
    expr: str
    alert: bool = False  # an alerting rule: empty while nothing is wrong
    record: str | None = None  # the series a recording rule writes


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(doc: dict[str, Any] | None = None) -> list[Query]:
    doc = doc or dashboard()
    return [
        Query(f"dashboard: {panel['title']} ({target['refId']})", target["expr"])
        for panel in panels(doc)
        for target in panel.get("targets", [])
    ]


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rule_queries() -> list[Query]:
    queries: list[Query] = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    queries.append(Query(f"rules: {rule['alert']}", rule["expr"], alert=True))
                else:
                    queries.append(
                        Query(f"rules: {rule['record']}", rule["expr"], record=rule["record"])
                    )
    return queries
