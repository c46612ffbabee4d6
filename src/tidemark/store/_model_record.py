"""The data model a database was written with, recorded in ``store_settings`` and checked on open."""

from __future__ import annotations

from tidemark.core import ModelMismatchError, get_logger

from ._engine import Transaction
from ._model import ResourceModel

log = get_logger("store")

FINGERPRINT_KEY = "model_fingerprint"
DESCRIPTION_KEY = "model_description"
PROJECTS_KEY = "model_projects"


def _setting(tx: Transaction, key: str) -> str | None:
    row = tx.query_one(f"SELECT value FROM store_settings WHERE key = ?{tx.for_update}", (key,))
    return None if row is None else str(row[0])


def _save(tx: Transaction, key: str, value: str) -> None:
    tx.execute(
        "INSERT INTO store_settings (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def _holds_model_documents(tx: Transaction, projects: str) -> bool:
    """Whether any document or tombstone belongs to a project of the recorded model (its
    collections are ``<project>:<endpoint>``); generic collections do not count."""
    for project in filter(None, projects.split(",")):
        pattern = project.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ":%"
        for table in ("documents", "tombstones"):
            found = tx.query_one(
                f"SELECT 1 FROM {table} WHERE collection LIKE ? ESCAPE '\\' LIMIT 1", (pattern,)
            )
            if found is not None:
                return True
    return False


def check_model(tx: Transaction, model: ResourceModel, *, migrate: bool) -> None:
    """Record ``model`` as the database's model, or refuse a different one.

    A database with no recorded model (new, or written before models were recorded) adopts
    ``model``. A different recorded model is replaced when ``migrate`` is set, or when the
    database holds no document of it (only generic collections: FHIR, sync); otherwise
    :class:`ModelMismatchError` is raised and nothing changes.
    """
    recorded = _setting(tx, FINGERPRINT_KEY)
    if recorded is None:
        # Two processes opening a new database at once: the first to commit records its model.
        tx.execute(
            "INSERT INTO store_settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
            (FINGERPRINT_KEY, model.fingerprint),
        )
        recorded = _setting(tx, FINGERPRINT_KEY)
        if recorded == model.fingerprint:
            _save(tx, DESCRIPTION_KEY, model.describe())
            _save(tx, PROJECTS_KEY, ",".join(model.project_endpoints))
            return
    if recorded == model.fingerprint:
        return
    if recorded is not None:
        described = _setting(tx, DESCRIPTION_KEY) or "another model"
        if not migrate and _holds_model_documents(tx, _setting(tx, PROJECTS_KEY) or ""):
            raise ModelMismatchError(
                f"this database holds documents of {described}, not of {model.describe()}; "
                "start with the model it was written with, or pass --migrate-model "
                "(open_store(..., migrate_model=True)) to adopt the new model deliberately"
            )
        log.warning(
            "data model of the database changed",
            previous=described,
            model=model.describe(),
            deliberate=migrate,
        )
    _save(tx, FINGERPRINT_KEY, model.fingerprint)
    _save(tx, DESCRIPTION_KEY, model.describe())
    _save(tx, PROJECTS_KEY, ",".join(model.project_endpoints))
