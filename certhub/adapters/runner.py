"""One adapter: a producer thread filling the outbox while the pusher drains it."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from certhub.adapters.config import AdapterConfig
from certhub.adapters.errors import SourceError
from certhub.adapters.outbox import Outbox, StatusReport
from certhub.adapters.producer import ProduceCounts, Producer, load_signing_key
from certhub.adapters.progress import Progress
from certhub.adapters.pusher import Pusher
from certhub.adapters.sources import open_source

__all__ = ["Adapter", "PassReport", "describe"]

log = logging.getLogger("certhub.adapter")


@dataclass(frozen=True, slots=True)
class PassReport:
    counts: ProduceCounts
    status: StatusReport


class Adapter:
    def __init__(
        self,
        config: AdapterConfig,
        *,
        stop: threading.Event | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self._progress = progress
        self._keys = load_signing_key(config)
        self._source = open_source(config.source)

    def close(self) -> None:
        close = getattr(self._source, "close", None)
        if close is not None:
            close()

    def status(self) -> StatusReport:
        with Outbox(self.config.outbox.path) as outbox:
            return outbox.status()

    def run_once(self) -> PassReport:
        """Read everything new, sign it into the outbox and push until the outbox is drained
        (retrying while the hub is down), or until ``stop`` is set."""
        progress = self._progress
        if progress is not None:
            with Outbox(self.config.outbox.path) as outbox:
                backlog = outbox.status().depth
                estimate = self._source.estimate(outbox)
            progress.set_total(None if estimate is None else backlog + estimate)
        producer = Producer(
            config=self.config,
            source=self._source,
            keys=self._keys,
            stop=self.stop,
            # Rows that sign nothing (unchanged, unreadable) leave the expected total; a
            # first-seen cancelled row signs two items.
            on_batch=(lambda rows, items: progress.add_to_total(items - rows))
            if progress is not None
            else (lambda rows, items: None),
        )
        produced = threading.Event()
        failure: list[BaseException] = []

        def produce() -> None:
            try:
                producer.run()
            except BaseException as exc:
                failure.append(exc)
            finally:
                produced.set()

        pusher = Pusher(
            endpoint=self.config.hub,
            outbox_path=self.config.outbox.path,
            max_in_flight=self.config.outbox.max_in_flight,
            streams=self.config.outbox.streams,
            stop=self.stop,
            on_settled=progress.advance if progress is not None else lambda a, r: None,
        )
        thread = threading.Thread(target=produce, name="adapter-producer", daemon=True)
        thread.start()
        try:
            pusher.drain(produced)
        except BaseException:
            self.stop.set()
            raise
        finally:
            thread.join()
            pusher.close()
            if progress is not None:
                progress.finish()
        if failure:
            raise failure[0]
        return PassReport(producer.counts, self.status())

    def run_forever(self) -> None:
        """Poll the source every ``poll_seconds`` until ``stop``; a source outage is logged
        and retried at the next poll, while the outbox keeps draining."""
        while not self.stop.is_set():
            try:
                report = self.run_once()
                log.info("pass done: %s", describe(report))
            except SourceError as exc:
                log.error("source: %s (retrying in %.0fs)", exc, self.config.outbox.poll_seconds)
                with Outbox(self.config.outbox.path) as outbox:
                    outbox.note_error(str(exc))
            self.stop.wait(self.config.outbox.poll_seconds)


def describe(report: PassReport) -> str:
    c, s = report.counts, report.status
    return (
        f"read {c.read} records ({c.unchanged} unchanged), signed {c.pushes} certificates and "
        f"{c.revocations} revocations, {c.problems} rows reported; outbox: {s.depth} pending, "
        f"{s.acked} acknowledged, {s.rejected} rejected"
    )
