"""Runs kept in Tiled: the RunEngine callback that shell, demo and notebooks subscribe, and the backup import.

    keeper = keep_runs(run_engine, tiled_settings(current))   # every run goes to Tiled
    import_backups(tiled_settings(current))                    # `tango-suite tiled import`

A run Tiled cannot take (server away, write refused) still runs to its end: TiledWriter's backup
keeps all its documents as JSON Lines in the stack's backup directory, and the user is told once.
"""

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .tiled_server import API_KEY_ENV

# Tiled's client retries a refused connection for up to 45 s; a scan must not stall that long on a
# Tiled that is away, so fail fast (read by tiled.client when first imported) unless the user chose.
os.environ.setdefault("TILED_RETRY_ATTEMPTS", "2")
os.environ.setdefault("TILED_RETRY_TIMEOUT", "2")

TILED_URI_ENV = "TILED_URI"
# TiledWriter logs a traceback when it falls back to its backup; the user gets one sentence from
# RunKeeper instead, and the record still reaches any handler the user configured.
logging.getLogger("bluesky_tiled_plugins.writing.tiled_writer").addHandler(logging.NullHandler())
IMPORTED_SUFFIX = ".imported"
# Events and StreamDatum are sent in batches of this many, so Tiled has a fly scan's frames while
# it runs (TiledWriter's default, 10000, sends a run of up to 10000 points at its stop).
BATCH_SIZE = 100


@dataclass(frozen=True)
class TiledSettings:
    """Where runs go: a Tiled URI with its API key, and the directory of the runs it could not take."""

    uri: str
    api_key: str | None
    backup_dir: Path


def tiled_settings(current: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> TiledSettings | None:
    """The Tiled of a running stack's state (`current`), None when it runs without one.

    TILED_URI and TILED_API_KEY in the environment win over the stack's own server and key file.
    """
    env = os.environ if environ is None else environ
    service = current.get("services", {}).get("tiled")
    if not service:
        return None
    api_key = env.get(API_KEY_ENV)
    if api_key is None and service.get("api_key_file"):
        api_key = Path(service["api_key_file"]).read_text().strip()
    return TiledSettings(env.get(TILED_URI_ENV) or service["uri"], api_key, Path(service["backup_dir"]))


def tiled_client(settings: TiledSettings) -> Any:
    """A Tiled client of `settings.uri`; raises when the server does not answer."""
    from tiled.client import from_uri

    return from_uri(settings.uri, api_key=settings.api_key)


class RunKeeper:
    """A RunEngine callback sending every run to Tiled through TiledWriter, the backup in between.

    When Tiled is not reachable at a run's start, the run goes straight to the backup directory.
    """

    def __init__(
        self, settings: TiledSettings, tell: Callable[[str], None] | None = None, batch_size: int = BATCH_SIZE
    ) -> None:
        self.settings = settings
        self.batch_size = batch_size
        self.tell = tell or (lambda message: print(message, file=sys.stderr, flush=True))
        self.told = False
        self._writer: Any = None
        self._route: Callable[[str, dict], None] | None = None
        self._backup_file: Path | None = None

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            self._start_run(doc)
        if self._route is None:
            return
        self._route(name, doc)
        if not self.told and self._backup_file is not None and self._backup_file.exists():
            self._tell_once()

    def _start_run(self, doc: dict[str, Any]) -> None:
        from bluesky_tiled_plugins.writing._json_writer import JSONLinesWriter, default_name

        self._backup_file = self.settings.backup_dir / default_name("start", doc, suffix=".jsonl")
        if self._writer is None:
            self._writer = self._connect()
        self._route = self._writer or JSONLinesWriter(str(self.settings.backup_dir))

    def _connect(self) -> Any:
        from bluesky_tiled_plugins import TiledWriter

        try:
            client = tiled_client(self.settings)
        except Exception:
            return None
        # Our documents are event-model's current schema: skipping the normalizer halves the per-event cost.
        return TiledWriter(
            client, backup_directory=str(self.settings.backup_dir), normalizer=None, batch_size=self.batch_size
        )

    def _tell_once(self) -> None:
        self.told = True
        self.tell(
            f"tango-suite: Tiled at {self.settings.uri} did not take a run; it is kept in {self.settings.backup_dir} "
            "(and so are the next ones it cannot take): 'tango-suite tiled import' sends them once Tiled is back."
        )


def keep_runs(run_engine: Any, settings: TiledSettings | None) -> RunKeeper | None:
    """Subscribe a RunKeeper to `run_engine` (nothing when the stack has no Tiled)."""
    if settings is None:
        return None
    keeper = RunKeeper(settings)
    run_engine.subscribe(keeper)
    return keeper


def import_backups(settings: TiledSettings) -> list[str]:
    """Send every backed-up run to Tiled, replacing a partial copy of it; returns the uids imported.

    Each imported file is renamed `*.jsonl.imported`, so a second import sends nothing twice.
    """
    from bluesky_tiled_plugins import TiledWriter

    client = tiled_client(settings)
    imported = []
    for path in sorted(settings.backup_dir.glob("*.jsonl")):
        documents = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not documents or documents[0]["name"] != "start":
            raise ValueError(f"{path}: not a bluesky run backup (its first document is not a 'start')")
        uid = documents[0]["doc"]["uid"]
        if uid in client:
            client[uid].delete(recursive=True, external_only=False)
        writer = TiledWriter(client)
        for entry in documents:
            writer(entry["name"], entry["doc"])
        path.rename(path.with_name(path.name + IMPORTED_SUFFIX))
        imported.append(uid)
    return imported
