"""Load generation for the HTTP benchmark: wrk when installed, else a lean asyncio client.

wrk (Debian package ``wrk``: ``apt-get install -y wrk``) is written in C and drives many
keep-alive connections from one thread, so it is not the bottleneck. Without it, the fallback
speaks HTTP/1.1 over raw asyncio streams from this Python process: it shares the machine's cores
with the servers and its figures are a lower bound.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import percentile


@dataclass(frozen=True)
class Load:
    """One kind of request: ``paths`` (and ``etags`` for If-None-Match) cycled in order, or a
    POST whose body is the school ``schoolIds[i]`` renamed with a counter (so every POST
    changes the stored document and commits)."""

    method: str
    paths: list[str]
    etags: list[str] | None = None
    school_ids: list[int] | None = None


@dataclass(frozen=True)
class Result:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def generator_name() -> str:
    """``wrk`` or ``python fallback``."""
    return "wrk" if shutil.which("wrk") else "python fallback"


def run(base: str, load: Load, seconds: float, connections: int) -> Result:
    """Drive ``base`` with ``load`` for ``seconds`` over ``connections`` keep-alive connections."""
    if shutil.which("wrk"):
        return _wrk(base, load, seconds, connections)
    return asyncio.run(_fallback(base, load, seconds, connections))


def _lua_list(values: list[str] | list[int]) -> str:
    return "{" + ",".join(json.dumps(v) for v in values) + "}"


_LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"us":%d,"p50":%d,"p99":%d,"errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def _script(load: Load) -> str:
    if load.method == "POST":
        return f"""
local ids = {_lua_list(load.school_ids or [])}
local path = {json.dumps(load.paths[0])}
local n, i, rev = #ids, 0, 0
local headers = {{["Content-Type"] = "application/json"}}
request = function()
  i = i % n + 1
  rev = rev + 1
  local body = string.format('{{"schoolId":%d,"nameOfInstitution":"School %d rev %d"}}',
    ids[i], ids[i], rev)
  return wrk.format("POST", path, headers, body)
end
{_LUA_DONE}"""
    etags = _lua_list(load.etags) if load.etags else "nil"
    return f"""
local paths = {_lua_list(load.paths)}
local etags = {etags}
local n, i = #paths, 0
request = function()
  i = i % n + 1
  if etags then
    return wrk.format("GET", paths[i], {{["If-None-Match"] = etags[i]}})
  end
  return wrk.format("GET", paths[i])
end
{_LUA_DONE}"""


def _wrk(base: str, load: Load, seconds: float, connections: int) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_script(load))
    try:
        completed = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                base,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        Path(script.name).unlink()
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    return Result(
        summary["requests"] / (summary["us"] / 1e6),
        summary["p50"] / 1000,
        summary["p99"] / 1000,
        summary["errors"],
        summary["requests"],
    )


async def _fallback(base: str, load: Load, seconds: float, connections: int) -> Result:
    host, port = base.removeprefix("http://").rstrip("/").split(":")
    latencies: list[float] = []
    counter = [0]
    errors = [0]
    deadline = time.perf_counter() + seconds

    def request(index: int) -> bytes:
        slot = index % len(load.paths)
        head = f"{load.method} {load.paths[slot]} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        if load.method == "POST":
            ids = load.school_ids or []
            school = ids[index % len(ids)]
            body = json.dumps(
                {"schoolId": school, "nameOfInstitution": f"School {school} rev {index}"}
            ).encode()
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            return head.encode() + body
        if load.etags:
            head += f"If-None-Match: {load.etags[slot]}\r\n"
        return (head + "\r\n").encode()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < deadline:
                counter[0] += 1
                started = time.perf_counter()
                writer.write(request(counter[0]))
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                latencies.append((time.perf_counter() - started) * 1000)
                if status >= 400:
                    errors[0] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return Result(
        len(latencies) / elapsed,
        percentile(latencies, 50),
        percentile(latencies, 99),
        errors[0],
        len(latencies),
    )
