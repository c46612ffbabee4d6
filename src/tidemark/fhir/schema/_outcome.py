"""Validation results as OperationOutcome-style issues, and their FHIR OperationOutcome rendering."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True)
class ValidationIssue:
    """One finding: FHIR ``IssueSeverity`` and ``IssueType`` codes, a sentence, and where.

    ``expression`` is a FHIRPath-style location such as ``Patient.name[0].given[1]``.
    """

    severity: Severity
    code: str
    diagnostics: str
    expression: str

    def as_dict(self) -> dict[str, Any]:
        """This issue as an ``OperationOutcome.issue`` entry."""
        return {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
            "expression": [self.expression],
        }


@dataclass(frozen=True)
class ValidationResult:
    """The issues found validating one resource, errors first then in document order."""

    issues: tuple[ValidationIssue, ...]

    @property
    def valid(self) -> bool:
        """True when no issue is an error (warnings and information do not count)."""
        return not any(i.severity in ("fatal", "error") for i in self.issues)

    @property
    def errors(self) -> list[ValidationIssue]:
        """The fatal and error issues."""
        return [i for i in self.issues if i.severity in ("fatal", "error")]

    @property
    def warnings(self) -> list[ValidationIssue]:
        """The warning issues."""
        return [i for i in self.issues if i.severity == "warning"]

    def __iter__(self) -> Iterator[ValidationIssue]:
        return iter(self.issues)

    def __len__(self) -> int:
        return len(self.issues)


def operation_outcome(issues: Iterable[ValidationIssue]) -> dict[str, Any]:
    """A FHIR ``OperationOutcome`` resource listing ``issues`` (a result or any iterable).

    With no issues it carries the single informational issue FHIR asks for ("All OK").
    """
    entries = [issue.as_dict() for issue in issues]
    if not entries:
        entries = [{"severity": "information", "code": "informational", "diagnostics": "All OK"}]
    return {"resourceType": "OperationOutcome", "issue": entries}
