"""The server stacks the HTTP benchmark compares, and one launcher that runs an app on any of them.

Run: python bench/_stacks.py {tidemark,bare} STACK --db DB --port PORT
(tidemark's app with default settings, or bench/bare_server.py's; both with the access log and
metrics the app itself does, none added by the server)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def _uvicorn(loop: str, http: str) -> Callable[[str, int, int], None]:
    def run(factory: str, port: int, workers: int) -> None:
        import uvicorn

        uvicorn.run(
            factory,
            factory=True,
            host="127.0.0.1",
            port=port,
            workers=workers,
            loop=loop,
            http=http,
            access_log=False,
            log_level="warning",
        )

    return run


def _granian(factory: str, port: int, workers: int) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    Granian(
        factory,
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        factory=True,
        log_access=False,
        websockets=False,
    ).serve()


#: Stack name -> function(factory import path, port, workers) that serves until terminated.
STACKS: dict[str, Callable[[str, int, int], None]] = {
    "uvicorn-h11": _uvicorn("asyncio", "h11"),
    "uvicorn-uvloop-httptools": _uvicorn("uvloop", "httptools"),
    "granian": _granian,
}

APPS = {"tidemark": "tidemark.api._factory:build_app", "bare": "bare_server:app_from_env"}


def available(stack: str) -> bool:
    """Whether ``stack``'s server is installed (granian is not a tidemark dependency)."""
    import importlib.util

    module = "granian" if stack == "granian" else "uvicorn"
    return importlib.util.find_spec(module) is not None


def serve(stack: str, factory: str, port: int, workers: int = 1) -> None:
    """Serve the app built by ``factory`` (``module:function``) on ``stack``."""
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(BENCH), os.environ.get("PYTHONPATH")])
    )
    STACKS[stack](factory, port, workers)


def main() -> None:
    sys.path.insert(0, str(BENCH))
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("app", choices=sorted(APPS))
    parser.add_argument("stack", choices=sorted(STACKS))
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    db = str(Path(args.db).resolve())
    if args.app == "tidemark":
        import asyncio

        from tidemark.api import ServerSettings, export_settings
        from tidemark.core import configure_logging
        from tidemark.store import open_store

        async def create() -> None:
            store = await open_store(db)
            await store.close()

        asyncio.run(create())
        settings = ServerSettings(db=db, port=args.port)
        configure_logging(settings.log_level, json=settings.log_json)
        export_settings(settings)
    else:
        os.environ["TIDEMARK_BARE_DB"] = db
    serve(args.stack, APPS[args.app], args.port)


if __name__ == "__main__":
    main()
