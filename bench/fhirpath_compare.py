"""Compare tidemark's FHIRPath evaluator with ``fhirpathpy`` on R4 core and US Core expressions.

    ./dev bench fhirpath_compare [--data DIR] [--show N]

Needs ``fhirpathpy`` (``pip install fhirpathpy``; it is not a tidemark dependency). Expressions:
every ``expression`` of R4 core's SearchParameters (on the resource types of their ``base``) and
every invariant (``constraint.expression``) of R4 core's and US Core's StructureDefinitions (on
the nodes at their element path). Sample resources: US Core's examples, R4 core's own
conformance resources, and two synthetic resources per R4 resource type (every element filled
from the StructureDefinition snapshot, choice elements with their first or second type), so every
path of every type is exercised.

Prints, per engine and per expression set: how many parse, how many run on every sample without
an error, the errors by cause, where the two engines give different answers (by cause, with
examples), and the time to evaluate every (expression, sample) pair both engines can run.
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import re
import sys
import tarfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from _common import print_table
from tidemark.fhir import fhirpath
from tidemark.fhir.packages import FhirPackage

R4_CORE = "fhir/hl7.fhir.r4.core-4.0.1.tgz"
US_CORE = "fhir/hl7.fhir.us.core-6.1.0.tgz"
CONTEXTS_PER_INVARIANT = 12


# -- samples -----------------------------------------------------------------------------------
_PRIMITIVE_SAMPLES: dict[str, Any] = {
    "boolean": True,
    "integer": 7,
    "positiveInt": 3,
    "unsignedInt": 0,
    "decimal": 1.5,
    "string": "Sample text",
    "markdown": "Some *markdown*",
    "code": "active",
    "id": "sample-id",
    "uri": "http://example.org/fhir/sample",
    "url": "http://example.org/fhir/sample",
    "canonical": "http://example.org/fhir/StructureDefinition/sample",
    "oid": "urn:oid:1.2.3.4",
    "uuid": "urn:uuid:8f2b4b0e-4c7e-4bd8-9d2f-5ea7bd0c6b4a",
    "base64Binary": "aGVsbG8=",
    "date": "2020-02-03",
    "dateTime": "2020-02-03T04:05:06Z",
    "instant": "2020-02-03T04:05:06.789Z",
    "time": "10:11:12",
}
_COMPLEX: set[str] = set()
_SKIPPED_ELEMENTS = ("id", "contained", "modifierExtension")


class Synthesizer:
    """Fills every element of a type from R4 core snapshots (depth-limited for datatypes)."""

    def __init__(self, package: FhirPackage) -> None:
        self.snapshots: dict[str, list[dict[str, Any]]] = {}
        for entry in package.structure_definitions():
            sd = package.resource(entry)
            if sd.get("derivation") == "specialization" and sd.get("kind") != "logical":
                self.snapshots[sd["type"]] = sd["snapshot"]["element"]

    def datatype(self, type_name: str, variant: int) -> dict[str, Any]:
        return self._fill(type_name, type_name, variant, depth=0)

    def resource(self, type_name: str, variant: int) -> dict[str, Any]:
        body = self._fill(type_name, type_name, variant, depth=0)
        body["resourceType"] = type_name
        body["id"] = f"synthetic-{variant}"
        return body

    def _fill(self, type_name: str, root: str, variant: int, depth: int) -> dict[str, Any]:
        elements = self.snapshots.get(type_name, [])
        result: dict[str, Any] = {}
        children: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for element in elements:
            path = element["path"]
            parts = path.split(".")
            if len(parts) < 2:
                continue
            children[".".join(parts[:-1])].append(element)
        self._fill_node(result, type_name, children, variant, depth)
        return result

    def _fill_node(
        self,
        node: dict[str, Any],
        path: str,
        children: dict[str, list[dict[str, Any]]],
        variant: int,
        depth: int,
    ) -> None:
        for element in children.get(path, []):
            name = element["path"].rsplit(".", 1)[-1]
            if name in _SKIPPED_ELEMENTS or (name == "extension" and depth > 0):
                continue
            if element.get("max") == "0":
                continue
            types = element.get("type") or []
            many = element.get("max") not in ("0", "1")
            if element.get("contentReference") or not types:
                continue
            if name.endswith("[x]"):
                chosen = types[variant % len(types)]
                code = chosen["code"]
                key = name[:-3] + code[0].upper() + code[1:]
            else:
                chosen = types[0]
                code = chosen["code"]
                key = name
            value = self._value(element, chosen, children, variant, depth)
            if value is None:
                continue
            node[key] = [value] if many else value

    def _value(
        self,
        element: dict[str, Any],
        type_: dict[str, Any],
        children: dict[str, list[dict[str, Any]]],
        variant: int,
        depth: int,
    ) -> Any:
        code = type_["code"]
        if code.startswith("http://hl7.org/fhirpath/System."):
            return _PRIMITIVE_SAMPLES["string"]
        if code in _PRIMITIVE_SAMPLES:
            return _PRIMITIVE_SAMPLES[code]
        if code in ("BackboneElement", "Element"):
            inner: dict[str, Any] = {}
            self._fill_node(inner, element["path"], children, variant, depth + 1)
            return inner or None
        if code == "Reference":
            targets = type_.get("targetProfile") or [
                "http://hl7.org/fhir/StructureDefinition/Patient"
            ]
            target = targets[variant % len(targets)].rsplit("/", 1)[-1]
            if target in ("Resource", "Any"):
                target = "Patient"
            return {"reference": f"{target}/ref-{variant}", "display": "A reference"}
        if code in ("Resource", "Extension", "Narrative", "Meta") or depth >= 2:
            if code == "Extension":
                return {"url": "http://example.org/ext", "valueString": "x"}
            return None
        if code not in self.snapshots:
            return None
        value = self._fill(code, code, variant, depth + 1)
        return value or None


def _example_resources(archive: Path) -> list[dict[str, Any]]:
    found = []
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith("package/example/"):
                handle = tar.extractfile(member)
                if handle is None or not member.name.endswith(".json"):
                    continue
                doc = orjson.loads(handle.read())
                if isinstance(doc, dict) and "resourceType" in doc:
                    found.append(doc)
    return found


def _bundle_members(resources: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for resource in resources:
        yield resource
        if resource.get("resourceType") == "Bundle":
            for entry in resource.get("entry", []):
                if isinstance(entry.get("resource"), dict):
                    yield entry["resource"]


# -- expressions ---------------------------------------------------------------------------------
@dataclass
class Expression:
    """One expression with the contexts it is evaluated in: (type or element path, samples)."""

    text: str
    kind: str  # "search" or "invariant"
    label: str
    contexts: list[str] = field(default_factory=list)


def search_expressions(core: FhirPackage) -> list[Expression]:
    result: dict[str, Expression] = {}
    for sp in core.iter_resources("SearchParameter"):
        text = sp.get("expression")
        if not text or "base" not in sp:
            continue
        found = result.setdefault(text, Expression(text, "search", sp["id"]))
        found.contexts.extend(b for b in sp["base"] if b not in found.contexts)
    return list(result.values())


def invariant_expressions(packages: Iterable[FhirPackage]) -> list[Expression]:
    result: dict[str, Expression] = {}
    for package in packages:
        for entry in package.structure_definitions():
            sd = package.resource(entry)
            for element in sd.get("snapshot", {}).get("element", []):
                for constraint in element.get("constraint", []):
                    text = constraint.get("expression")
                    if not text:
                        continue
                    found = result.setdefault(
                        text, Expression(text, "invariant", constraint["key"])
                    )
                    path = element["path"]
                    if path not in found.contexts and len(found.contexts) < CONTEXTS_PER_INVARIANT:
                        found.contexts.append(path)
    return list(result.values())


def _nodes_at(resource: dict[str, Any], path: str) -> list[tuple[Any, str | None]]:
    """The JSON nodes at an element path (``Patient.contact.name``), each with its type when the
    JSON names it (a choice element's suffix)."""
    parts = path.split(".")
    nodes: list[tuple[Any, str | None]] = [(resource, parts[0])]
    for part in parts[1:]:
        step: list[tuple[Any, str | None]] = []
        stem = part[:-3] if part.endswith("[x]") else None
        for node, _ in nodes:
            if not isinstance(node, dict):
                continue
            for key, value in node.items():
                if key == part:
                    type_name = None
                elif stem is not None and key.startswith(stem) and key[len(stem) :][:1].isupper():
                    suffix = key[len(stem) :]
                    type_name = suffix if suffix in _COMPLEX else suffix[0].lower() + suffix[1:]
                else:
                    continue
                step.extend((v, type_name) for v in (value if isinstance(value, list) else [value]))
        nodes = step
    return nodes


# -- engines -----------------------------------------------------------------------------------
@dataclass
class Outcome:
    parsed: bool = True
    parse_error: str = ""
    errors: Counter[str] = field(default_factory=Counter)
    results: dict[tuple[int, int], Any] = field(default_factory=dict)
    runs: int = 0


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "…", text)
    text = re.sub(r"\d+", "N", text)
    return text[:70]


def _normal(values: Iterable[Any]) -> list[str]:
    out = []
    for raw in values:
        value = float(raw) if isinstance(raw, Decimal) else raw
        if isinstance(value, dict | list | str | int | float | bool) or value is None:
            text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=_plain).decode()
        else:
            text = orjson.dumps(str(value)).decode()
        out.append(text)
    return sorted(out)


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else str(value)


class Engine:
    name: str

    def compile(self, text: str) -> Callable[[Any, dict[str, Any], str, str | None], list[Any]]:
        raise NotImplementedError


class Tidemark(Engine):
    name = "tidemark"

    def compile(self, text: str) -> Callable[[Any, dict[str, Any], str, str | None], list[Any]]:
        fhirpath.parse(text)

        def run(focus: Any, root: dict[str, Any], path: str, type_name: str | None) -> list[Any]:
            items = fhirpath.evaluate(
                text, focus, resource=root, root_resource=root, focus_type=type_name
            )
            return [item.value for item in items]

        return run


class FhirPathPy(Engine):
    name = "fhirpathpy"

    def __init__(self) -> None:
        import fhirpathpy
        from fhirpathpy.models import models

        self.module = fhirpathpy
        self.model = models["r4"]

    def compile(self, text: str) -> Callable[[Any, dict[str, Any], str, str | None], list[Any]]:
        from fhirpathpy.engine.nodes import ResourceNode

        compiled = self.module.compile(
            text, model=self.model, options={"traceFn": lambda label, value: None}
        )

        def run(focus: Any, root: dict[str, Any], path: str, type_name: str | None) -> list[Any]:
            # A resource carries its type; a datatype or an element gets it from the path.
            typed = isinstance(focus, dict) and "resourceType" in focus
            node = focus if typed else ResourceNode.create_node(focus, path)  # type: ignore[no-untyped-call]
            return list(compiled(node, {"resource": root, "rootResource": root}))

        return run


def measure(
    engine: Engine,
    expressions: list[Expression],
    samples: dict[str, list[dict[str, Any]]],
) -> tuple[list[Outcome], float]:
    outcomes = []
    started = time.perf_counter()
    for expression in expressions:
        outcome = Outcome()
        try:
            run = engine.compile(expression.text)
        except Exception as exc:
            outcome.parsed = False
            outcome.parse_error = _reason(exc)
            outcomes.append(outcome)
            continue
        for context_index, path in enumerate(expression.contexts):
            root_type = path.split(".")[0]
            for sample_index, root in enumerate(samples.get(root_type, [])):
                for node_index, (focus, type_name) in enumerate(_nodes_at(root, path)):
                    key = (context_index, sample_index * 1000 + node_index)
                    outcome.runs += 1
                    try:
                        outcome.results[key] = _normal(run(focus, root, path, type_name))
                    except RecursionError:
                        outcome.errors["recursion"] += 1
                    except Exception as exc:
                        outcome.errors[_reason(exc)] += 1
        outcomes.append(outcome)
    return outcomes, time.perf_counter() - started


def timed_pairs(
    engine: Engine,
    expressions: list[Expression],
    samples: dict[str, list[dict[str, Any]]],
    keep: list[set[tuple[int, int]]],
) -> tuple[int, float]:
    """Seconds to evaluate the (expression, sample) pairs in ``keep`` (compiled beforehand)."""
    jobs = []
    for expression, keys in zip(expressions, keep, strict=True):
        if not keys:
            continue
        run = engine.compile(expression.text)
        for context_index, path in enumerate(expression.contexts):
            root_type = path.split(".")[0]
            for sample_index, root in enumerate(samples.get(root_type, [])):
                for node_index, (focus, type_name) in enumerate(_nodes_at(root, path)):
                    if (context_index, sample_index * 1000 + node_index) in keys:
                        jobs.append((run, focus, root, path, type_name))
    started = time.perf_counter()
    for run, focus, root, path, type_name in jobs:
        run(focus, root, path, type_name)
    return len(jobs), time.perf_counter() - started


# -- report ------------------------------------------------------------------------------------
def report(
    title: str,
    expressions: list[Expression],
    samples: dict[str, list[dict[str, Any]]],
    engines: list[Engine],
    show: int,
) -> None:
    # fhirpathpy annotates the JSON it is given in place: each engine gets its own copy.
    copies = {engine.name: copy.deepcopy(samples) for engine in engines}
    results = {engine.name: measure(engine, expressions, copies[engine.name]) for engine in engines}
    rows = []
    for engine in engines:
        outcomes, seconds = results[engine.name]
        parsed = sum(o.parsed for o in outcomes)
        clean = sum(o.parsed and not o.errors for o in outcomes)
        exercised = sum(o.parsed and o.runs > 0 for o in outcomes)
        runs = sum(o.runs for o in outcomes)
        failed = sum(sum(o.errors.values()) for o in outcomes)
        rows.append([engine.name, len(expressions), parsed, exercised, clean, runs, failed])
    print_table(
        f"{title}: {len(expressions)} distinct expressions",
        ["engine", "expressions", "parse", "ran on samples", "no error", "runs", "failed runs"],
        rows,
    )
    for engine in engines:
        outcomes, _ = results[engine.name]
        causes: Counter[str] = Counter()
        for outcome in outcomes:
            if not outcome.parsed:
                causes[f"parse: {outcome.parse_error}"] += 1
            for cause in outcome.errors:
                causes[cause] += 1
        print(f"\n  {engine.name}: expressions failing, by cause (an expression may have several)")
        for cause, count in causes.most_common(show):
            print(f"    {count:5d}  {cause}")
    if len(engines) != 2:
        return
    (a_name, (a_out, _)), (b_name, (b_out, _)) = results.items()
    disagree: list[tuple[Expression, Any, Any, str]] = []
    both_keys: list[set[tuple[int, int]]] = []
    agree_pairs = 0
    for expression, a, b in zip(expressions, a_out, b_out, strict=True):
        shared = set(a.results) & set(b.results)
        both_keys.append(shared)
        for key in sorted(shared):
            if a.results[key] != b.results[key]:
                path = expression.contexts[key[0]]
                sample = samples[path.split(".")[0]][key[1] // 1000]
                where = f"{path} on {sample.get('resourceType', path)}/{sample.get('id', '-')}"
                disagree.append((expression, a.results[key], b.results[key], where))
                break
        else:
            agree_pairs += 1
    print(
        f"\n  both ran: {sum(bool(k) for k in both_keys)} expressions; they agree on every "
        f"shared run for {agree_pairs - sum(not k for k in both_keys)}, differ on "
        f"{len(disagree)}"
    )
    for expression, a_value, b_value, where in disagree[:show]:
        print(f"    {expression.label}: {expression.text[:110]}  [{where}]")
        print(f"      {a_name}: {str(a_value)[:150]}")
        print(f"      {b_name}: {str(b_value)[:150]}")
    seconds_by_engine: list[float] = []
    speed_rows: list[list[Any]] = []
    for engine in engines:
        count, seconds = timed_pairs(engine, expressions, copies[engine.name], both_keys)
        seconds_by_engine.append(seconds)
        speed_rows.append([engine.name, count, seconds, count / seconds if seconds else 0.0])
    print_table(
        f"{title}: speed on the runs both engines complete",
        ["engine", "runs", "seconds", "runs/s"],
        speed_rows,
    )
    if all(seconds_by_engine):
        ratio = seconds_by_engine[1] / seconds_by_engine[0]
        print(f"  {engines[1].name} / {engines[0].name} time: {ratio:.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TIDEMARK_TEST_DATA", "../shared/data"))
    parser.add_argument("--show", type=int, default=12)
    args = parser.parse_args()
    data = Path(args.data)
    try:
        engines: list[Engine] = [Tidemark(), FhirPathPy()]
    except ImportError:
        print("fhirpathpy is not installed: pip install fhirpathpy", file=sys.stderr)
        return 2
    sys.setrecursionlimit(10_000)
    core = FhirPackage.load(data / R4_CORE)
    us_core = FhirPackage.load(data / US_CORE)
    synthesizer = Synthesizer(core)
    _COMPLEX.update(t for t in synthesizer.snapshots if _is_datatype(core, t))
    samples: dict[str, list[dict[str, Any]]] = defaultdict(list)
    loaded = [
        *_bundle_members(_example_resources(data / US_CORE)),
        *(core.resource(e) for e in core.entries() if e.resource_type != "StructureDefinition"),
        *(core.resource(e) for e in core.structure_definitions()[:40]),
    ]
    for resource in loaded:
        samples[resource["resourceType"]].append(resource)
    for type_name, elements in synthesizer.snapshots.items():
        if elements and type_name[0].isupper() and _is_resource(core, type_name):
            samples[type_name] += [synthesizer.resource(type_name, v) for v in (0, 1)]
        elif elements and _is_datatype(core, type_name):
            samples[type_name] += [synthesizer.datatype(type_name, v) for v in (0, 1)]
    capped = {k: v[:24] for k, v in samples.items()}
    print(
        f"samples: {sum(len(v) for v in capped.values())} resources of {len(capped)} types "
        f"(US Core examples, R4 core conformance resources, 2 synthetic per resource type and "
        f"datatype; at most 24 per type)"
    )
    report(
        "R4 core SearchParameter expressions", search_expressions(core), capped, engines, args.show
    )
    report(
        "R4 core + US Core invariants",
        invariant_expressions([core, us_core]),
        capped,
        engines,
        args.show,
    )
    return 0


def _is_datatype(core: FhirPackage, type_name: str) -> bool:
    entry = core.entry(f"http://hl7.org/fhir/StructureDefinition/{type_name}")
    return entry is not None and entry.kind == "complex-type"


def _is_resource(core: FhirPackage, type_name: str) -> bool:
    entry = core.entry(f"http://hl7.org/fhir/StructureDefinition/{type_name}")
    return entry is not None and entry.kind == "resource"


if __name__ == "__main__":
    sys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", line_buffering=True)
    raise SystemExit(main())
