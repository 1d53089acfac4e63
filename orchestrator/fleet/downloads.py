"""Fetch engines' model files from the Hugging Face hub into the models directory.

Downloads run in a daemon thread (a download cannot be cancelled, and must not hold up a
shutdown); progress goes to the log every ten percent. Offline, the error says which files are
missing, where they belong, and how to get them.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from pathlib import Path
from typing import Any

from orchestrator.fleet.records import EngineRecord
from services.base import ModelArtifact
from services.errors import VoiceOrchestratorError

log = logging.getLogger(__name__)


class DownloadError(VoiceOrchestratorError):
    """A model could not be fetched; the message says what is missing and what to do."""

    code = "download_failed"
    status = 502


def _progress_class() -> type[Any]:
    from tqdm import tqdm

    class LoggingProgress(tqdm):  # type: ignore[misc]
        """A progress bar that writes to the log instead of a terminal."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["file"] = io.StringIO()
            kwargs["disable"] = False
            super().__init__(*args, **kwargs)
            self._logged_decile = -1

        def update(self, n: float | None = 1) -> bool | None:
            result: bool | None = super().update(n)
            if self.total:
                decile = int(10 * self.n / self.total)
                if decile > self._logged_decile:
                    self._logged_decile = decile
                    log.info(
                        "download %s: %d%% of %.1f MB",
                        self.desc or "",
                        decile * 10,
                        self.total / 1e6,
                    )
            return result

    return LoggingProgress


def download_artifact(artifact: ModelArtifact, models_dir: Path) -> Path:
    """Blocking: fetch the artifact's files; return the local folder that holds them."""
    from huggingface_hub import snapshot_download

    target = artifact.local_dir(models_dir)
    target.mkdir(parents=True, exist_ok=True)
    log.info(
        "downloading %s (%s) into %s", artifact.repo_id, ", ".join(artifact.allow_patterns), target
    )
    try:
        snapshot_download(
            artifact.repo_id,
            revision=artifact.revision,
            allow_patterns=list(artifact.allow_patterns),
            local_dir=target,
            tqdm_class=_progress_class(),
        )
    except Exception as exc:  # the hub client raises many kinds: offline, gated, not found, HTTP
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise DownloadError(
            f"could not download {artifact.repo_id} ({type(exc).__name__}: {reason}); "
            f"missing: {', '.join(artifact.missing_files(models_dir))} in {target}. "
            "Run `python -m orchestrator download` where the hub is reachable "
            "(HF_TOKEN for gated models) or copy the files there."
        ) from exc
    missing = artifact.missing_files(models_dir)
    if missing:
        raise DownloadError(f"{artifact.repo_id} downloaded but lacks {', '.join(missing)}")
    return target


async def download_in_background(artifact: ModelArtifact, models_dir: Path) -> Path:
    """Await a download that runs in a daemon thread, so shutdown never waits for it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Path] = loop.create_future()

    def run() -> None:
        result: Path | None = None
        error: BaseException | None = None
        try:
            result = download_artifact(artifact, models_dir)
        except BaseException as exc:
            error = exc
        try:
            loop.call_soon_threadsafe(_settle, future, result, error)
        except RuntimeError:  # the loop closed while we downloaded: nobody is waiting
            log.info("download of %s finished after shutdown", artifact.repo_id)

    threading.Thread(target=run, name=f"download-{artifact.repo_id}", daemon=True).start()
    return await future


async def fetch_missing(name: str, record: EngineRecord, models_dir: Path) -> None:
    """Fetch whatever hub files the engine lacks; failures become the engine's status."""
    for artifact in record.engine.artifacts():
        if not artifact.missing_files(models_dir):
            continue
        record.downloading = True
        try:
            await download_in_background(artifact, models_dir)
            record.download_error = None
        except DownloadError as exc:
            record.download_error = str(exc)
            log.warning("%s: %s", name, exc)
        finally:
            record.downloading = False


def _settle(future: asyncio.Future[Path], result: Path | None, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    elif result is not None:
        future.set_result(result)
