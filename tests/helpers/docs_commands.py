"""Commands read from the docs, so tests run what users are told to run.

docs/cluster.md marks the one ``ray job submit`` command users run: the line ``<!-- cluster-job -->`` directly
before a fenced ```bash block. :func:`cluster_job_command` returns that command's argv; :func:`substitute`
points it at a test cluster (address, storage, interpreter, config) and appends overrides, e.g.::

    argv = substitute(cluster_job_command(), address=cluster.address, storage=bucket_uri,
                      python=sys.executable, extra=["features.enrich.backend=transformers", "train.use_gpu=false"])
    cluster.run_client(argv, cwd=ROOT)          # the runtime env's working_dir "." is the checkout
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[2]
MARK = "<!-- cluster-job -->"


def marked_block(path: str | Path = "docs/cluster.md", mark: str = MARK) -> str:
    """The body of the fenced code block right after the line ``mark`` (blank lines between are allowed)."""
    path = Path(path)
    if not path.is_absolute():
        path = ROOT / path
    lines = path.read_text().splitlines()
    at = [i for i, line in enumerate(lines) if line.strip() == mark]
    if len(at) != 1:
        raise ValueError(f"{path}: expected one line '{mark}', found {len(at)}")
    i = at[0] + 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i == len(lines) or not lines[i].lstrip().startswith("```"):
        raise ValueError(f"{path}:{at[0] + 1}: '{mark}' is not followed by a fenced code block")
    fence = lines[i].strip()
    if fence not in ("```bash", "```sh", "```shell"):
        raise ValueError(f"{path}:{i + 1}: expected a ```bash block after '{mark}', found '{fence}'")
    body = []
    for line in lines[i + 1:]:
        if line.strip().startswith("```"):
            return "\n".join(body) + "\n"
        body.append(line)
    raise ValueError(f"{path}:{i + 1}: the code block after '{mark}' is never closed")


def shell_commands(text: str) -> list[list[str]]:
    """The commands of a shell snippet, each as argv: backslash-newline continuations joined, ``#`` comments
    dropped, newlines inside quotes kept (a multi-line JSON argument stays one argument)."""
    text = text.replace("\\\n", " ")
    commands, line, quote, escaped = [], [], None, False
    for ch in text + "\n":
        if escaped:
            escaped = False
        elif quote == "#":                          # in a comment: up to the end of the line
            if ch != "\n":
                continue
            quote = None
        elif quote:
            if ch == quote:
                quote = None
            elif ch == "\\" and quote == '"':
                escaped = True
        elif ch == "\\":
            escaped = True
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (not line or line[-1] in " \t"):
            quote = "#"
            continue
        if ch == "\n" and quote is None:
            argv = shlex.split("".join(line))
            if argv:
                commands.append(argv)
            line = []
            continue
        line.append(ch)
    if quote not in (None, "#"):
        raise ValueError(f"unclosed {quote} in:\n{text}")
    return commands


def cluster_job_command(path: str | Path = "docs/cluster.md") -> list[str]:
    """The argv of the ``ray job submit ...`` command in the marked block of ``path``."""
    found = [c for c in shell_commands(marked_block(path)) if c[:3] == ["ray", "job", "submit"]]
    if len(found) != 1:
        raise ValueError(f"{path}: expected one 'ray job submit' command in the '{MARK}' block, found {len(found)}")
    argv = found[0]
    if "--" not in argv:
        raise ValueError(f"{path}: the 'ray job submit' command has no '--' before its entrypoint")
    return argv


def entrypoint(argv: Sequence[str]) -> list[str]:
    """What the job runs: everything after ``--``."""
    return list(argv[list(argv).index("--") + 1:])


def runtime_env(argv: Sequence[str]) -> dict:
    """The ``--runtime-env-json`` of a ``ray job submit`` argv, parsed ({} if none)."""
    value = _option(list(argv[:list(argv).index("--")]), "--runtime-env-json")
    return json.loads(value) if value is not None else {}


def _option(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name:
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _set_option(args: list[str], name: str, value: str) -> list[str]:
    for i, a in enumerate(args):
        if a == name:
            return [*args[:i + 1], value, *args[i + 2:]]
        if a.startswith(name + "="):
            return [*args[:i], f"{name}={value}", *args[i + 1:]]
    raise ValueError(f"no {name} in {args}")


def substitute(argv: Sequence[str], *, address: str | None = None, storage: str | None = None,
               python: str | None = None, config: str | None = None, runtime_env_update: dict | None = None,
               extra: Sequence[str] = ()) -> list[str]:
    """``argv`` (a ``ray job submit ... -- python -m ...`` command) with ``--address``, the entrypoint's
    ``python``, its ``--config`` and its ``pipeline.storage=`` replaced where given, the runtime env updated
    with ``runtime_env_update`` (top-level keys), and ``extra`` overrides appended (later overrides win)."""
    argv = list(argv)
    cut = argv.index("--")
    client, job = argv[:cut], argv[cut + 1:]
    if address is not None:
        client = _set_option(client, "--address", address)
    if runtime_env_update:
        env = {**runtime_env(argv), **runtime_env_update}
        client = _set_option(client, "--runtime-env-json", json.dumps(env))
    if python is not None:
        if job[0] != "python":
            raise ValueError(f"the entrypoint does not start with 'python': {job}")
        job[0] = python
    if config is not None:
        job = _set_option(job, "--config", config)
    if storage is not None:
        keyed = [i for i, a in enumerate(job) if a.startswith("pipeline.storage=")]
        if not keyed:
            raise ValueError(f"the entrypoint sets no pipeline.storage: {job}")
        for i in keyed:
            job[i] = f"pipeline.storage={storage}"
    return [*client, "--", *job, *extra]
