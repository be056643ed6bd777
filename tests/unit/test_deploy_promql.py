"""Every query in the dashboard and the alert rules names what the daemon exports.

The exported names, labels and label values come from a real scrape: a
real ``Engine`` driven through every outcome (stored and refused puts, hits
and misses, flushes, evictions), exposed by ``TmemdCollector`` and parsed
back.  Each PromQL expression is then taken apart with a small lexer: every
metric it selects must be exported, every label it matches or groups by must
exist on those metrics, and every literal label value it matches (``op="get_page"``)
must be one the daemon produces.  A typo such as ``op="get"`` fails here,
where Prometheus would just return nothing.

``promtool check rules``, ``check config`` and ``test rules`` run where
Debian's ``prometheus`` package provides ``promtool``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tmem.proto import Opcode
from tmemd._latency import LatencyRecorder
from tmemd.engine import Engine, EngineConfig
from tmemd.metrics import ServerStats, TmemdCollector

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "tmemd.json"
RULES = DEPLOY / "prometheus" / "tmemd.rules.yml"
#: Labels Prometheus adds to every scraped series, and its own ``up`` series.
TARGET_LABELS = {"instance", "job"}
PROMETHEUS_SERIES = {"up": TARGET_LABELS}
#: What Grafana substitutes for the dashboard's variables (any value will do
#: for checking names; the end-to-end test evaluates with these too).
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$instance": ".*", "$client": ".*"}
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "and", "or", "unless", "inf", "nan",
}  # fmt: skip
_FUNCTIONS = {
    "sum", "avg", "max", "min", "count", "rate", "irate", "increase", "histogram_quantile",
    "label_values", "abs", "clamp_min", "clamp_max", "deriv", "delta", "absent", "topk",
}  # fmt: skip
_STRING = r'"(?:[^"\\]|\\.)*"'
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{((?:[^}\"]|" + _STRING + r")*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*(" + _STRING + ")")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_NUMBER_OR_DURATION = re.compile(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?[smhdwy]?\b")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?")


@dataclass
class Exported:
    """Sample names the daemon exposes, with their label names and values."""

    labels: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    values: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))


@cache
def exported() -> Exported:
    """Scrape a real engine driven through every outcome the labels describe."""
    engine = Engine(
        EngineConfig(memory_bytes=256 << 10, persistent_max=0.5, persistent_accept=0.4),
        clock=time.monotonic,
    )
    engine.connect("c")
    kw: dict[str, Any] = dict(shared_uuid=None, precompressed=False, page_size=4096, codec=None)
    eph = engine.new_pool("c", persistent=False, **kw)
    per = engine.new_pool("c", persistent=True, **kw)
    for i in range(200):  # overfill both: refusals and evictions
        engine.put("c", per, 1, i, i.to_bytes(4, "big") * 1024)
        engine.put("c", eph, 1, i, i.to_bytes(4, "big") * 1024)
    engine.get("c", per, 1, 0, None)
    engine.get("c", per, 9, 0, None)
    recorder = LatencyRecorder()
    for op in Opcode:
        recorder.observe(op.name.lower(), 1e-5)
    server = ServerStats(1, 1, 0, 1, 1, recorder.snapshot(), 1.0, 10, {"c": 1})
    registry = CollectorRegistry()
    registry.register(TmemdCollector(engine.statistics, lambda: server))
    out = Exported()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out.labels[sample.name].update(sample.labels)
            for key, value in sample.labels.items():
                out.values[sample.name, key].add(value)
    return out


@dataclass
class Parsed:
    metrics: set[str] = field(default_factory=set)
    #: (metric or None, label, operator, value) for each label matcher.
    matchers: list[tuple[str | None, str, str, str]] = field(default_factory=list)
    grouping_labels: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)


def substitute(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    return expr


def parse_promql(expr: str) -> Parsed:
    """Metric names, matchers, grouping labels and functions of one expression."""
    out = Parsed()
    text = substitute(expr)
    values = re.search(r"label_values\((.*),\s*([a-zA-Z_]\w*)\)\s*$", text)
    if values:  # Grafana's variable query: label_values(selector, label)
        text, out.grouping_labels = values.group(1), {values.group(2)}
        out.functions.add("label_values")
    for match in _SELECTOR.finditer(text):
        name = match.group(1) if match.group(1) not in _KEYWORDS | _FUNCTIONS else None
        for label, op, quoted in _MATCHER.findall(match.group(2)):
            out.matchers.append((name, label, op, json.loads(quoted)))
    text = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", text)
    for _kind, labels in _GROUPING.findall(text):
        out.grouping_labels.update(w.strip() for w in labels.split(",") if w.strip())
    text = _GROUPING.sub(" ", text)
    text = _NUMBER_OR_DURATION.sub(" ", _RANGE.sub(" ", text))
    for match in _IDENT.finditer(text):
        word = match.group(0).rstrip("( \t")
        if match.group(1):
            out.functions.add(word)
        elif word not in _KEYWORDS:
            out.metrics.add(word)
    return out


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every panel target, variables left in."""
    return [
        (panel["title"], target["expr"])
        for panel in _panels(dashboard()["panels"])
        for target in panel.get("targets", [])
    ]


def variable_queries() -> list[str]:
    return [
        v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        for v in dashboard()["templating"]["list"]
        if v["type"] == "query"
    ]


def rule_expressions() -> list[tuple[str, str]]:
    """(alert name, expression) of every rule."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(r.get("alert") or r["record"], r["expr"]) for g in groups for r in g["rules"]]


def all_expressions() -> list[tuple[str, str]]:
    variables = [("variable", q) for q in variable_queries()]
    return [*dashboard_queries(), *variables, *rule_expressions()]


def check_expression(where: str, expr: str) -> None:
    ex = exported()
    parsed = parse_promql(expr)
    assert parsed.metrics, f"{where}: no metric in {expr!r}"
    assert parsed.functions <= _FUNCTIONS, f"{where}: unknown function in {expr!r}"
    known = {**ex.labels, **PROMETHEUS_SERIES}
    for metric in parsed.metrics:
        assert metric in known, f"{where}: {metric} is not exported"
    in_scope = set(TARGET_LABELS).union(*(known[m] for m in parsed.metrics))
    assert parsed.grouping_labels <= in_scope, f"{where}: {parsed.grouping_labels - in_scope}"
    for metric, label, op, value in parsed.matchers:
        labels = known[metric] | TARGET_LABELS if metric else in_scope
        assert label in labels, f"{where}: {metric} has no label {label!r}"
        if label in TARGET_LABELS or "$" in value or op in ("!=", "!~") or metric is None:
            continue
        wanted = set(value.split("|")) if op == "=~" else {value}
        if op == "=~" and not all(re.fullmatch(r"[\w.]+", w) for w in wanted):
            continue  # a real regular expression: nothing to compare
        produced = ex.values[metric, label]
        assert wanted <= produced, f"{where}: {metric}{{{label}}} never is {wanted - produced}"


@pytest.mark.parametrize(("where", "expr"), all_expressions())
def test_query_names_exported_metrics(where: str, expr: str) -> None:
    check_expression(where, expr)


def test_the_checker_catches_mistakes() -> None:
    """The lexer is only worth something if it rejects what it should."""
    bad = [
        'rate(tmemd_op_total{op="get_page"}[5m])',  # misspelt metric
        'rate(tmemd_ops_total{op="get"}[5m])',  # value the daemon never sets
        "sum by (object_id) (tmemd_stored_pages)",  # label that does not exist
        "tmemd_ops",  # a counter's family name, not its sample name
        'tmemd_stored_pages{reason="x"}',  # label of another metric
        "sum(rat(tmemd_ops_total[5m]))",  # misspelt function
    ]
    for expr in bad:
        with pytest.raises(AssertionError):
            check_expression("test", expr)
    check_expression(
        "test",
        "sum by (le) (rate(tmemd_op_duration_seconds_bucket"
        '{op=~"put_page|get_page"}[$__rate_interval]))',
    )


def test_parse_promql() -> None:
    parsed = parse_promql(
        'sum by (instance, client) (rate(tmemd_ops_total{op="put_page", instance=~"$instance"}'
        "[5m] offset 1h)) / on (instance) tmemd_memory_limit_bytes > 0.5 * 1e3"
    )
    assert parsed.metrics == {"tmemd_ops_total", "tmemd_memory_limit_bytes"}
    assert parsed.functions == {"sum", "rate"}
    assert parsed.grouping_labels == {"instance", "client"}
    assert ("tmemd_ops_total", "op", "=", "put_page") in parsed.matchers
    assert parse_promql("label_values(tmemd_build_info, instance)").metrics == {"tmemd_build_info"}


def test_dashboard_covers_what_an_operator_needs() -> None:
    """The panels deploy/README.md names, each found by its title."""
    titles = [p["title"].lower() for p in _panels(dashboard()["panels"]) if p["type"] != "row"]
    needed = [
        "against the limit", "density", "hit rate per pool", "refusals by reason",
        "evictions by reason", "ops by op", "latency quantiles", "clients", "connections",
    ]  # fmt: skip
    for words in needed:
        assert any(words in t for t in titles), f"no panel about {words!r}: {titles}"


def test_dashboard_layout_is_sound() -> None:
    dash = dashboard()
    panels = list(_panels(dash["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}"
            refs = [t["refId"] for t in p["targets"]]
            assert refs and len(refs) == len(set(refs)), p["title"]
            assert p.get("description"), f"{p['title']}: say what the panel shows"
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "instance", "client"}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    return path


def _run(*argv: str) -> None:
    result = subprocess.run(argv, cwd=RULES.parent, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    _run(_promtool(), "check", "rules", RULES.name)


def test_promtool_check_config() -> None:
    _run(_promtool(), "check", "config", "prometheus.yml")


def test_promtool_test_rules() -> None:
    """Each alert fires on its situation and not on the harmless one beside it."""
    _run(_promtool(), "test", "rules", "tmemd.rules.test.yml")
