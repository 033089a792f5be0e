"""Fixtures: real `mmsearch serve` processes on 127.0.0.1:0, each with its own data directory.

The server binary is `$MMSEARCH_BIN`, else `$CARGO_TARGET_DIR/release/mmsearch`, else
`target/release/mmsearch` in the repository, else `~/.cache/mmsearch-target/release/mmsearch`
(where deploy/test.sh builds). Without one the tests fail; they never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mmsearch

REPO = Path(__file__).resolve().parents[3]
TLS_DIR = REPO / "tests" / "data" / "tls"
DEMO_DIR = Path(os.environ.get("MMSEARCH_DEMO", Path.home() / ".cache" / "mmsearch" / "demo"))
DEMO_CATALOG = DEMO_DIR / "catalog.jsonl"
DIM = 8


def find_binary() -> Path:
    if os.environ.get("MMSEARCH_BIN"):
        path = Path(os.environ["MMSEARCH_BIN"])
        if not path.is_file():
            pytest.fail(f"MMSEARCH_BIN={path} does not exist")
        return path
    candidates = []
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "mmsearch")
    candidates.append(REPO / "target" / "release" / "mmsearch")
    candidates.append(Path.home() / ".cache" / "mmsearch-target" / "release" / "mmsearch")
    for c in candidates:
        if c.is_file():
            return c
    pytest.fail(
        "no mmsearch server binary: set MMSEARCH_BIN, or build one (cargo build --bin mmsearch) into one of "
        + ", ".join(str(c) for c in candidates)
    )


@pytest.fixture(scope="session")
def binary() -> Path:
    return find_binary()


class Server:
    """A running `mmsearch serve`; `addr` is host:port."""

    def __init__(self, binary: Path, root: Path, config: str, *args: str, models: bool = False) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.data = root / "data"
        self.config = root / "config.toml"
        self.config.write_text(config)
        self.log = root / "server.log"
        argv = [str(binary), "serve", "--config", str(self.config), "--data-dir", str(self.data), "--listen", "127.0.0.1:0"]
        if not models:
            argv.append("--no-models")
        argv.extend(args)
        env = dict(os.environ, RUST_LOG="warn,mmsearch=info")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(self.log, "wb"), env=env, text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 120
        addr = None
        for line in self.proc.stdout:
            if line.startswith("mmsearch listening on "):
                addr = line.split()[-1]
                break
            if time.monotonic() > deadline:
                break
        if addr is None:
            self.stop()
            pytest.fail(f"server did not start: {' '.join(argv)}\n{self.log.read_text()[-3000:]}")
        self.addr: str = addr
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout or ()], daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    @property
    def port(self) -> int:
        return int(self.addr.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def space_config(extra: str = "") -> str:
    """Two spaces without models: `shared` (the text role) and `other`."""
    return f"""
[[spaces]]
name = "shared"
dim = {DIM}
metric = "cosine"
role = "text"

[[spaces]]
name = "other"
dim = 4
metric = "cosine"

[index]
min_graph_size = 16

{extra}
"""


@pytest.fixture(scope="session")
def servers(binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def start(binary: Path, servers: list[Server], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """start(config, *args, models=False) -> Server, stopped at the end of the session."""

    def start(config: str, *args: str, models: bool = False) -> Server:
        s = Server(binary, tmp_path_factory.mktemp("server"), config, *args, models=models)
        servers.append(s)
        return s

    return start


@pytest.fixture(scope="session")
def vec_server(start: Any) -> Server:
    """No models, no auth, a 1 MiB message limit."""
    return start(space_config("[limits]\nmax_message_bytes = 1048576"), "--insecure-no-auth")  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def demo_server(start: Any) -> Server:
    """The real models (text, image, voice), no auth, empty: the demo test ingests."""
    if not DEMO_CATALOG.is_file():
        pytest.fail(f"demo catalogue {DEMO_CATALOG} missing: run deploy/demo/fetch_vendure.py")
    return start("", "--insecure-no-auth", models=True)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def demo(demo_server: Server) -> tuple[Server, mmsearch.UpsertResult]:
    """The demo server with the Vendure catalogue ingested from Python."""
    with mmsearch.Client(demo_server.addr) as client:
        result = client.upsert(mmsearch.read_jsonl(DEMO_CATALOG), batch_size=16)
    return demo_server, result


def cli(binary: Path, server: Server, *args: str) -> dict[str, Any]:
    """`mmsearch search --json ...` against `server`."""
    out = subprocess.run(
        [str(binary), "search", "--json", "--server", server.url, *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def espeak(text: str, path: Path) -> Path:
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng)")
    subprocess.run([exe, "-v", "en-us", "-s", "150", "-w", str(path), text], check=True, capture_output=True)
    return path


def unit(values: list[float]) -> list[float]:
    n = sum(v * v for v in values) ** 0.5
    return [v / n for v in values]


def keygen(binary: Path, name: str, *roles: str) -> tuple[str, str]:
    """`mmsearch keygen`: the key (for the client) and the [[auth.keys]] entry (for the server)."""
    argv = [str(binary), "keygen", "--name", name]
    for r in roles:
        argv += ["--role", r]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    key = next(line[2:].strip() for line in out.splitlines() if line.startswith("# mms_"))
    entry = out[out.index("[[auth.keys]]"):]
    return key, entry


@pytest.fixture(scope="session")
def auth_server(binary: Path, start: Any) -> tuple[Server, dict[str, str]]:
    """Auth on, no models, one key per role (plus one with ingest and search)."""
    keys: dict[str, str] = {}
    entries = []
    for name, roles in (("search", ["search"]), ("ingest", ["ingest"]), ("admin", ["admin"]), ("both", ["ingest", "search"])):
        keys[name], entry = keygen(binary, f"py-{name}", *roles)
        entries.append(entry)
    config = space_config("[auth]\nenabled = true\n" + "\n".join(entries))
    return start(config), keys
