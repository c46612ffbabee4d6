"""Regenerate tidemark's bundled table of R4 core's search parameters from the official package.

    python scripts/fhir_search_parameters.py [PACKAGE.tgz] [--check]

PACKAGE defaults to ``$TIDEMARK_TEST_DATA/fhir/hl7.fhir.r4.core-4.0.1.tgz``. Writes
``src/tidemark/fhir/search/r4-search-parameters.json``: one row per SearchParameter that tidemark
supports (name, code, type, targets, the expression part for each base type) and each resource
type's summary elements (for ``_summary=true``), and prints the counts and every parameter left
out with the reason. ``--check`` only compares with the
committed table (exit 1 when it differs).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

import orjson

from tidemark.fhir.packages import FhirPackage
from tidemark.fhir.search import (
    SearchParameter,
    Unsupported,
    compact_rows,
    parameters_from_resource,
)

TABLE = Path(__file__).resolve().parents[1] / "src/tidemark/fhir/search/r4-search-parameters.json"
DEFAULT_PACKAGE = "fhir/hl7.fhir.r4.core-4.0.1.tgz"


def collect(package: FhirPackage) -> tuple[list[SearchParameter], list[Unsupported], int]:
    """Supported and unsupported (base, code) pairs of a package; the first definition of a
    (base, code) pair (by canonical) wins and later ones are reported as duplicates."""
    supported: list[SearchParameter] = []
    unsupported: list[Unsupported] = []
    seen: set[tuple[str, str]] = set()
    resources = sorted(package.iter_resources("SearchParameter"), key=lambda r: r.get("url", ""))
    for resource in resources:
        found, missing = parameters_from_resource(resource)
        for parameter in found:
            if (parameter.base, parameter.code) in seen:
                unsupported.append(
                    Unsupported(parameter.base, parameter.code, parameter.url, "duplicate")
                )
                continue
            seen.add((parameter.base, parameter.code))
            supported.append(parameter)
        unsupported += missing
    return supported, unsupported, len(resources)


def summary_elements(package: FhirPackage) -> dict[str, list[str]]:
    """The top-level elements each resource type marks ``isSummary`` (``value[x]`` → ``value``)."""
    found: dict[str, list[str]] = {}
    for entry in package.structure_definitions():
        if entry.kind != "resource":
            continue
        definition = package.resource(entry)
        if definition.get("derivation") != "specialization" or definition.get("abstract"):
            continue
        names = [
            element["path"].split(".")[1].removesuffix("[x]")
            for element in definition["snapshot"]["element"]
            if element["path"].count(".") == 1 and element.get("isSummary")
        ]
        found[definition["type"]] = sorted(set(names) - {"id", "meta"})
    return dict(sorted(found.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = Path(os.environ.get("TIDEMARK_TEST_DATA", "../shared/data"))
    parser.add_argument("package", nargs="?", default=str(data / DEFAULT_PACKAGE))
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    package = FhirPackage.load(args.package)
    supported, unsupported, resources = collect(package)
    table = {
        "package": package.manifest.package_id,
        "parameters": compact_rows(supported),
        "summary": summary_elements(package),
    }
    text = orjson.dumps(table) + b"\n"
    print(f"{package.manifest.package_id}: {resources} SearchParameter resources")
    print(
        f"  supported (type, code) pairs: {len(supported)} of {len(supported) + len(unsupported)}"
    )
    print(f"  by type: {dict(Counter(p.type for p in supported).most_common())}")
    print(f"  unsupported: {len(unsupported)}")
    for reason, count in Counter(u.reason for u in unsupported).most_common():
        print(f"    {count:4d}  {reason}")
    for item in sorted(unsupported, key=lambda u: (u.reason, u.base, u.code)):
        print(f"      {item.base or '-'}.{item.code}: {item.reason}")
    if args.check:
        same = TABLE.exists() and TABLE.read_bytes() == text
        print("the committed table is up to date" if same else "the committed table differs")
        return 0 if same else 1
    TABLE.write_bytes(text)
    print(f"wrote {TABLE.name} ({len(text):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
