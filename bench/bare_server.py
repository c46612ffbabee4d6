"""The bare baseline server: Starlette over one SQLite table serving the same JSON as tidemark.

It does the least a server of Ed-Fi ``schools`` can do: one table (WAL, ``synchronous=FULL``), the
representation stored as the JSON text it serves, reads answered straight from the event loop,
``If-None-Match`` compared with the stored version, and every POST an upsert on the natural key
made durable by its own commit. ``bench/http_load.py`` measures tidemark against it.

Run: python bench/bare_server.py --db FILE --port PORT [--stack NAME]
(stacks: the names of ``bench/_stacks.py``)
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DB_ENV = "TIDEMARK_BARE_DB"
PATH = "/data/ed-fi/schools"


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schools (id TEXT PRIMARY KEY, school_id INTEGER NOT NULL UNIQUE,"
        " version INTEGER NOT NULL, representation BLOB NOT NULL)"
    )
    return conn


def create_app(path: str) -> Starlette:
    """The baseline app over the SQLite file ``path`` (created when missing)."""
    conn = _connect(path)
    versions = [conn.execute("SELECT coalesce(max(version), 0) FROM schools").fetchone()[0]]

    async def read(request: Request) -> Response:
        row = conn.execute(
            "SELECT version, representation FROM schools WHERE id = ?",
            (request.path_params["id"],),
        ).fetchone()
        if row is None:
            return Response(status_code=404)
        etag = f'"{row[0]}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(row[1], media_type="application/json", headers={"ETag": etag})

    async def upsert(request: Request) -> Response:
        body: dict[str, Any] = orjson.loads(await request.body())
        school_id = body.get("schoolId")
        if not isinstance(school_id, int) or not isinstance(body.get("nameOfInstitution"), str):
            return Response(status_code=400)
        versions[0] += 1
        version = versions[0]
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT id FROM schools WHERE school_id = ?", (school_id,)
            ).fetchone()
            id = row[0] if row else uuid.uuid4().hex
            representation = orjson.dumps(
                {"id": id, **body, "_etag": str(version), "_lastModifiedDate": stamp}
            )
            conn.execute(
                "INSERT INTO schools (id, school_id, version, representation) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET version = excluded.version, "
                "representation = excluded.representation",
                (id, school_id, version, representation),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        headers = {"ETag": f'"{version}"', "Location": f"{request.base_url}{PATH[1:]}/{id}"}
        return Response(status_code=200 if row else 201, headers=headers)

    return Starlette(
        routes=[
            Route(PATH, upsert, methods=["POST"]),
            Route(PATH + "/{id}", read, methods=["GET"]),
            Route("/health", lambda request: Response(b"ok"), methods=["GET"]),
        ]
    )


def app_from_env() -> Starlette:
    """The app over the file named by ``TIDEMARK_BARE_DB`` (the factory the stacks import)."""
    return create_app(os.environ[DB_ENV])


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _stacks import STACKS, serve

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stack", choices=sorted(STACKS), default="uvicorn-uvloop-httptools")
    args = parser.parse_args()
    os.environ[DB_ENV] = str(Path(args.db).resolve())
    serve(args.stack, "bare_server:app_from_env", args.port)


if __name__ == "__main__":
    main()
