"""The library entry point: open the source and the replica, run rounds once or on an interval."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from tidemark.core import Counters, SourceUnavailableError, get_logger
from tidemark.store import ResourceModel, Store, open_store

from ._metadata import source_model
from ._replicator import COUNTER_NAMES, PAGE_SIZE, ProgressHook, Replicator, RoundSummary
from ._source import EdFiSource, RetryPolicy

log = get_logger("replicate")


async def replicate(
    source_url: str,
    target: Store | str | Path,
    *,
    model: ResourceModel | str | Path | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    resources: Sequence[str] | None = None,
    interval: float | None = None,
    rounds: int | None = None,
    progress: ProgressHook | None = None,
    on_round: Callable[[RoundSummary], None] | None = None,
    counters: Counters | None = None,
    retry: RetryPolicy | None = None,
    page_size: int = PAGE_SIZE,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[RoundSummary]:
    """Bring the replica ``target`` in step with the Ed-Fi API at ``source_url``.

    ``target`` is an open :class:`~tidemark.store.Store` or a database URL, opened with
    ``model`` (an ApiSchema path or a loaded model); without ``model`` it is read from the
    source's OpenAPI metadata (see :func:`source_model`).
    Without ``interval`` one round runs: the full extract the first time, the changes since the
    watermark afterwards (a crash-interrupted round is finished first). With ``interval``
    (seconds) rounds repeat until cancelled, or ``rounds`` of them ran. Returns the summary of
    every round; ``on_round`` sees each as it ends. ``page_size``: documents per request and per
    transaction.

    Raises :class:`~tidemark.core.UnauthorizedError` / ``ForbiddenError`` when the source
    refuses the credentials, :class:`~tidemark.core.ModelMismatchError` when it serves another
    model, :class:`~tidemark.core.SourceUnavailableError` when it stays unreachable after the
    retries (on an interval such a round is logged instead, and the next one continues).
    Whatever a failed round committed stays committed and the next run continues it.
    """
    counters = counters or Counters(*COUNTER_NAMES)
    source = EdFiSource(
        source_url,
        client_id=client_id,
        client_secret=client_secret,
        retry=retry,
        on_request=lambda: counters.increment("requests"),
        on_retry=lambda: counters.increment("retries"),
        transport=transport,
    )
    summaries: list[RoundSummary] = []
    try:
        if isinstance(target, Store):
            store = target
        else:
            if model is None:
                model = await source_model(source)
            store = await open_store(target, model=model)
    except BaseException:
        await source.close()
        raise
    try:
        replicator = Replicator(
            source,
            store,
            resources=resources,
            counters=counters,
            progress=progress,
            page_size=page_size,
        )
        while True:
            try:
                summary = await replicator.run_round()
            except SourceUnavailableError as error:
                if interval is None:
                    raise
                # On an interval the next round continues from what this one committed.
                log.error("round failed, retrying at the next interval", reason=str(error))
            else:
                summaries.append(summary)
                if on_round is not None:
                    on_round(summary)
                if interval is None or (rounds is not None and len(summaries) >= rounds):
                    return summaries
            await asyncio.sleep(interval)
    finally:
        await source.close()
        if not isinstance(target, Store):
            await store.close()
