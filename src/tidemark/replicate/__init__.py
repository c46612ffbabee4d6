"""tidemark.replicate: keep a local store in step with any Ed-Fi API through its Change Queries.

The first round extracts every resource in dependency order, keeping the source's ids, and
stores the watermark read before it began; each later round applies the live documents of the
window ``watermark + 1 … newestChangeVersion`` in dependency order, then the deletes in reverse
order, and stores the new watermark. Every page commits together with the position it reaches,
so a crash at any moment resumes where it stopped. A window the source no longer retains is
replaced by a reconciliation of the resources concerned.
"""

from ._display import TerminalProgress
from ._metadata import api_schema_from_openapi, source_model
from ._progress_state import STATE_COLLECTION, Position, ReplicaState, load_state
from ._replicator import COUNTER_NAMES, PAGE_SIZE, Replicator, RoundSummary, source_body
from ._run import replicate
from ._source import Discovery, EdFiSource, RetryPolicy

__all__ = [
    "COUNTER_NAMES",
    "PAGE_SIZE",
    "STATE_COLLECTION",
    "Discovery",
    "EdFiSource",
    "Position",
    "ReplicaState",
    "Replicator",
    "RetryPolicy",
    "RoundSummary",
    "TerminalProgress",
    "api_schema_from_openapi",
    "load_state",
    "replicate",
    "source_body",
    "source_model",
]
