"""Compare tidemark's FHIRSchema converter with the reference ``@atomic-ehr/fhirschema`` (node).

    ./dev bench fhirschema_reference [--show N] [--data DIR]

Installs the reference converter with npm into ``bench/.work/`` (git-ignored), converts every
StructureDefinition of R4 core (and US Core 6.1.0) with it under node and with tidemark,
compares canonical JSON, and prints: equal / total for base resources and datatypes (kind
resource, complex-type or primitive-type that is not a constraint), the same for profiles and
extensions, each remaining difference (with the decision of docs/fhirschema-decisions.md that
explains it), and the time to convert all of R4 core with node vs tidemark (cold, one run each).

The functions are reused by ``bench/schemas.py``: :func:`ensure_reference`,
:func:`reference_convert`, :func:`tidemark_convert`, :func:`load_structure_definitions`,
:func:`compare`, :func:`is_base_definition`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from _common import best_of, print_table, ratio_line
from tidemark.core import canonical_bytes
from tidemark.fhir.packages import FhirPackage
from tidemark.fhir.schema import convert

REFERENCE_PACKAGE = "@atomic-ehr/fhirschema"
REFERENCE_VERSION = "0.0.14"
WORK_DIR = Path(__file__).resolve().parent / ".work"
R4_CORE = "fhir/hl7.fhir.r4.core-4.0.1.tgz"
US_CORE = "fhir/hl7.fhir.us.core-6.1.0.tgz"

# Reads NDJSON StructureDefinitions, converts them all in one timed loop (cold: first use in
# this process), then three more times (warm: the best of them), writes {url: schema} and
# prints both wall times in ms.
_NODE_RUNNER = """
import { translate } from '@atomic-ehr/fhirschema';
import fs from 'node:fs';
const [input, output] = process.argv.slice(2);
const sds = fs.readFileSync(input, 'utf8').split('\\n').filter(Boolean).map((l) => JSON.parse(l));
const results = {};
const errors = {};
const start = process.hrtime.bigint();
for (const sd of sds) {
  try { results[sd.url] = translate(sd); } catch (e) { errors[sd.url] = String(e); }
}
const ms = Number(process.hrtime.bigint() - start) / 1e6;
let warmMs = Infinity;
for (let round = 0; round < 3; round++) {
  const again = process.hrtime.bigint();
  for (const sd of sds) {
    try { translate(sd); } catch (e) { /* reported by the first loop */ }
  }
  warmMs = Math.min(warmMs, Number(process.hrtime.bigint() - again) / 1e6);
}
fs.writeFileSync(output, JSON.stringify({ results, errors }));
process.stdout.write(JSON.stringify({ ms, warmMs, count: sds.length }));
"""


class ReferenceUnavailable(RuntimeError):
    """node/npm are missing or the reference converter cannot be installed."""


@dataclass
class ConversionRun:
    """Schemas by canonical URL, conversion errors by URL, and the wall time of the first
    (cold) conversion loop and of the best of three more (warm) over the same definitions."""

    schemas: dict[str, Any]
    errors: dict[str, str]
    seconds: float
    warm_seconds: float


@dataclass
class Comparison:
    """Equal/total per category and, for each differing definition, its differences."""

    equal: Counter[str] = field(default_factory=Counter)
    total: Counter[str] = field(default_factory=Counter)
    differences: dict[str, list[str]] = field(default_factory=dict)
    categories: dict[str, str] = field(default_factory=dict)


def data_dir() -> Path:
    """The shared data folder (``$TIDEMARK_TEST_DATA``, default ``../shared/data``)."""
    configured = os.environ.get("TIDEMARK_TEST_DATA")
    root = Path(__file__).resolve().parent.parent
    return Path(configured) if configured else root.parent / "shared" / "data"


def ensure_reference(work_dir: Path = WORK_DIR) -> Path:
    """Install the pinned reference converter under ``work_dir`` (once); returns the runner path.

    Raises :class:`ReferenceUnavailable` when node or npm is missing or npm cannot install it.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise ReferenceUnavailable("node and npm are needed to run the reference converter")
    work_dir.mkdir(parents=True, exist_ok=True)
    installed = work_dir / "node_modules" / "@atomic-ehr" / "fhirschema" / "package.json"
    version = None
    if installed.exists():
        version = orjson.loads(installed.read_bytes()).get("version")
    if version != REFERENCE_VERSION:
        if not (work_dir / "package.json").exists():
            (work_dir / "package.json").write_text('{"private": true, "type": "module"}\n')
        spec = f"{REFERENCE_PACKAGE}@{REFERENCE_VERSION}"
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent", spec],
            cwd=work_dir,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise ReferenceUnavailable(f"npm install {spec} failed: {done.stderr.strip()[-500:]}")
    runner = work_dir / "run_reference.mjs"
    if not runner.exists() or runner.read_text() != _NODE_RUNNER:
        runner.write_text(_NODE_RUNNER)
    return runner


def reference_convert(
    structure_definitions: Iterable[Mapping[str, Any]], work_dir: Path = WORK_DIR
) -> ConversionRun:
    """Convert with the reference under node (one fresh process: a cold run)."""
    runner = ensure_reference(work_dir)
    node = shutil.which("node") or "node"
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        source, target = Path(tmp) / "in.ndjson", Path(tmp) / "out.json"
        source.write_bytes(b"\n".join(orjson.dumps(sd) for sd in structure_definitions))
        done = subprocess.run(
            [node, str(runner), str(source), str(target)],
            cwd=work_dir,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise ReferenceUnavailable(f"node failed: {done.stderr.strip()[-500:]}")
        timing = orjson.loads(done.stdout)
        output = orjson.loads(target.read_bytes())
    return ConversionRun(
        output["results"], output["errors"], timing["ms"] / 1000, timing["warmMs"] / 1000
    )


def tidemark_convert(structure_definitions: Iterable[Mapping[str, Any]]) -> ConversionRun:
    """Convert with tidemark in this process, timing only the conversion loop."""
    sds = list(structure_definitions)
    schemas: dict[str, Any] = {}
    errors: dict[str, str] = {}
    start = time.perf_counter()
    for sd in sds:
        try:
            schemas[sd["url"]] = convert(sd)
        except Exception as exc:  # a failure is a finding to print, not a crash
            errors[sd["url"]] = repr(exc)
    cold = time.perf_counter() - start
    good = [sd for sd in sds if sd["url"] not in errors]
    warm = best_of(lambda: [convert(sd) for sd in good], repeat=3)
    return ConversionRun(schemas, errors, cold, warm)


def load_structure_definitions(package: Path | FhirPackage) -> list[dict[str, Any]]:
    """Every StructureDefinition of a package (a path or a loaded package), in index order."""
    loaded = package if isinstance(package, FhirPackage) else FhirPackage.load(package)
    return list(loaded.iter_resources("StructureDefinition"))


def is_base_definition(sd: Mapping[str, Any]) -> bool:
    """A base resource or data type: kind resource/complex-type/primitive-type, not a constraint."""
    return (
        sd.get("kind") in ("resource", "complex-type", "primitive-type")
        and sd.get("derivation") != "constraint"
    )


def _diff(ours: Any, ref: Any, path: str, out: list[tuple[str, Any, Any]]) -> None:
    if isinstance(ours, dict) and isinstance(ref, dict):
        for key in sorted(set(ours) | set(ref)):
            _diff(ours.get(key, _ABSENT), ref.get(key, _ABSENT), f"{path}.{key}", out)
    elif isinstance(ours, list) and isinstance(ref, list) and len(ours) == len(ref):
        for i, (a, b) in enumerate(zip(ours, ref, strict=True)):
            _diff(a, b, f"{path}[{i}]", out)
    elif ours is _ABSENT or ref is _ABSENT or canonical_bytes(ours) != canonical_bytes(ref):
        out.append((path, ours, ref))


class _Absent:
    def __repr__(self) -> str:
        return "absent"


_ABSENT: Any = _Absent()

# Which documented decision explains a difference, by the shape of its path and values.
_RULES: list[tuple[str, re.Pattern[str], str]] = [
    ("D9", re.compile(r""), "ref:[Circular Reference]"),
    ("D7", re.compile(r"\.excluded$"), "ours"),
    ("D4/D11", re.compile(r"\.match\.url$"), "ours"),
    ("D4/D11", re.compile(r"\.extensions\.[^.]+\.url$"), "ours"),
    ("D11", re.compile(r"\.match(\.|$)"), "any"),
    ("D11", re.compile(r"\.slicing\.(discriminator|rules|ordered)$"), "ours"),
    (
        "D3",
        re.compile(r"(slices\.[^.]+\.schema|extensions\.[^.]+)\.(_required|min|max|array)$"),
        "ref",
    ),
    ("D6", re.compile(r"\.binding$"), "ours"),
    ("D12", re.compile(r"\.(array|max|min)$"), "ours"),
    ("D2", re.compile(r"\.max$"), "ref:*"),
    ("D1", re.compile(r"\.required$"), "any"),
    ("D1", re.compile(r"\.elements\.[^.]+\.[A-Za-z_]+$"), "ref-sliced"),
    ("D5", re.compile(r"\.elements\.[^.]+$"), "ours"),
    ("D5", re.compile(r"\.excluded$"), "any"),
]


def _explain(path: str, ours: Any, ref: Any, ref_schema: Mapping[str, Any]) -> str:
    numbers = (int, float)
    if isinstance(ours, numbers) and isinstance(ref, numbers) and ours == ref:
        return "D10"  # JavaScript prints the decimal 3.0 as 3; the source's precision is kept
    for decision, pattern, side in _RULES:
        if side == "ref:[Circular Reference]":
            if ref == "[Circular Reference]":
                return decision
            continue
        if not pattern.search(path):
            continue
        if side == "ours" and ours is not _ABSENT and (ref is _ABSENT or decision == "D6"):
            return decision
        if side == "ref" and ref is not _ABSENT and ours is _ABSENT:
            return decision
        if side == "ref:*" and ref == "*" and ours is _ABSENT:
            return decision
        if side == "any":
            return decision
        if side == "ref-sliced" and ours is _ABSENT and _sliced_in_ref(path, ref_schema):
            return decision
    return "UNEXPLAINED"


def _sliced_in_ref(path: str, ref_schema: Mapping[str, Any]) -> bool:
    parts = path.strip(".").split(".")[:-1]
    node: Any = ref_schema
    for part in parts:
        node = node.get(part) if isinstance(node, Mapping) else None
    return isinstance(node, Mapping) and "slicing" in node


def compare(
    structure_definitions: Iterable[Mapping[str, Any]],
    ours: Mapping[str, Any],
    reference: Mapping[str, Any],
) -> Comparison:
    """Compare canonical JSON per definition; differences are ``path: note [decision]`` lines."""
    result = Comparison()
    for sd in structure_definitions:
        url = sd["url"]
        category = "base" if is_base_definition(sd) else "profile/extension"
        result.categories[url] = category
        result.total[category] += 1
        mine, theirs = ours.get(url, _ABSENT), reference.get(url, _ABSENT)
        if mine is not _ABSENT and canonical_bytes(mine) == canonical_bytes(theirs):
            result.equal[category] += 1
            continue
        found: list[tuple[str, Any, Any]] = []
        _diff(mine, theirs, "", found)
        lines = []
        for path, a, b in found:
            decision = _explain(path, a, b, theirs if isinstance(theirs, Mapping) else {})
            lines.append(f"{path or '.'}: ours {_short(a)} / reference {_short(b)} [{decision}]")
        result.differences[url] = lines
    return result


def _short(value: Any) -> str:
    text = "absent" if value is _ABSENT else orjson.dumps(value).decode()
    return text if len(text) <= 70 else text[:67] + "..."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--show", type=int, default=3, help="differences shown per definition")
    parser.add_argument("--data", type=Path, default=data_dir(), help="shared data folder")
    args = parser.parse_args()
    packages = {"R4 core": args.data / R4_CORE, "US Core 6.1.0": args.data / US_CORE}
    for path in packages.values():
        if not path.exists():
            sys.exit(f"missing {path} (set TIDEMARK_TEST_DATA)")
    try:
        ensure_reference()
    except ReferenceUnavailable as exc:
        sys.exit(f"reference converter unavailable: {exc}")

    rows: list[list[Any]] = []
    decisions: Counter[str] = Counter()
    timing: dict[str, tuple[ConversionRun, ConversionRun, int]] = {}
    for label, path in packages.items():
        sds = load_structure_definitions(path)
        reference = reference_convert(sds)
        ours = tidemark_convert(sds)
        timing[label] = (reference, ours, len(sds))
        if ours.errors or reference.errors:
            print(f"\n{label}: conversion errors ours={ours.errors} reference={reference.errors}")
        comparison = compare(sds, ours.schemas, reference.schemas)
        rows.extend(
            [label, category, comparison.equal[category], comparison.total[category]]
            for category in ("base", "profile/extension")
            if comparison.total[category]
        )
        print(f"\n{label}: remaining differences ({len(comparison.differences)} definitions)")
        for url, lines in comparison.differences.items():
            tags = Counter(line.rsplit("[", 1)[1].rstrip("]") for line in lines)
            decisions.update(tags)
            summary = ", ".join(f"{tag} x{n}" for tag, n in sorted(tags.items()))
            print(f"  {url} [{comparison.categories[url]}] {len(lines)} paths: {summary}")
            for line in lines[: args.show]:
                print(f"      {line}")

    print_table(
        "Equal canonical JSON (tidemark vs @atomic-ehr/fhirschema)",
        ["package", "kind", "equal", "total"],
        rows,
    )
    print_table(
        "Differing paths by decision (docs/fhirschema-decisions.md)",
        ["decision", "paths"],
        [[k, v] for k, v in sorted(decisions.items())],
    )
    print_table(
        "Convert all StructureDefinitions (cold: first loop in the process; warm: best of 3 more)",
        [
            "package",
            "definitions",
            "node cold s",
            "tidemark cold s",
            "node warm s",
            "tidemark warm s",
        ],
        [
            [label, n, ref.seconds, ours.seconds, ref.warm_seconds, ours.warm_seconds]
            for label, (ref, ours, n) in timing.items()
        ],
    )
    ref, ours, _ = timing["R4 core"]
    print()
    print(ratio_line("R4 core cold, tidemark / node", ours.seconds, ref.seconds, "lower is better"))
    print(
        ratio_line(
            "R4 core warm, tidemark / node", ours.warm_seconds, ref.warm_seconds, "lower is better"
        )
    )


if __name__ == "__main__":
    main()
