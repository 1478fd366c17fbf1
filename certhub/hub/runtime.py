"""Assembling a hub from its configuration: the explicit factory for every environment."""

from __future__ import annotations

import gc
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from certhub.hub.app import HolderCache, Hub
from certhub.hub.audit.log import AuditLogKeys
from certhub.hub.caching import build_holder_cache, build_rate_limiter
from certhub.hub.config import mask_secret
from certhub.hub.pki import PkiPaths, init_hub_secrets
from certhub.hub.services.registry_store import RegistrySource
from certhub.hub.store import migrate
from certhub.hub.store.aio import AsyncReader
from certhub.hub.store.engine import make_engine, make_session_factory, sqlite_url
from certhub.signing import NoteSigner

log = logging.getLogger("certhub.runtime")

DEFAULT_DATA_DIR = Path("certhub-data")
DEFAULT_ADDRESS = "127.0.0.1:50051"
# The audit log's origin line when the registry names none. It must never change for the
# life of a log: checkpoints of another origin do not verify against it.
DEFAULT_LOG_ORIGIN = "certhub.local/audit"


# Young-generation collections start after this many net allocations of container objects
# (CPython's default is 700). A serving hub holds hundreds of requests' objects at once (a
# push stream keeps 256 pushes in flight), and every young collection walks them all: at
# 700 the collector took 35-40 us of CPU per push, after gc.freeze (bench/push_bench.py,
# docs/performance.md); at 10,000, ~2 us. The price is cyclic garbage waiting for up to
# that many allocations before it is freed: a few MB at most.
GC_YOUNG_THRESHOLD = 10_000


# How long a thread may hold the GIL while another waits (CPython's default is 5 ms). A
# serving process runs its event loop, the group committer and gRPC's poller in threads: a
# committer woken by the database waited up to 5 ms for the loop to let go, once per batch,
# and every call of the batch waited with it. 0.5 ms took bench/push_bench.py on PostgreSQL
# from 172 to 400 pushes/s at the same CPU per push (docs/performance.md).
SWITCH_INTERVAL_SECONDS = 0.0005


def tune_runtime_for_serving() -> None:
    """Call once the hub is built, before serving. Freezes everything allocated so far
    (modules, mappers, the registry, compiled statements: none of it is ever garbage, yet
    each full collection walked it, 30-45 us of CPU per push) and collects the young
    generation less often (see GC_YOUNG_THRESHOLD); threads take turns at the GIL sooner
    (see SWITCH_INTERVAL_SECONDS)."""
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


@dataclass(frozen=True, kw_only=True)
class HubConfig:
    data_dir: Path = DEFAULT_DATA_DIR
    # SQLAlchemy URL; None = SQLite file in the data dir.
    db_url: str | None = None
    redis_url: str | None = None
    address: str = DEFAULT_ADDRESS
    insecure: bool = False
    log_origin: str = DEFAULT_LOG_ORIGIN
    cache_enabled: bool = True
    # Namespaces this deployment's keys in a shared Redis (cache and rate limits).
    cache_prefix: str = "certhub"
    # Hub processes serving this deployment from this machine (`serve --workers`); decides
    # whether an in-process cache is safe (only with one).
    workers: int = 1
    # Serve gRPC server reflection (`serve --no-reflection` turns it off).
    reflection: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return self.db_url or sqlite_url(self.data_dir)

    @property
    def pki(self) -> PkiPaths:
        return PkiPaths(self.data_dir)


def open_engine(config: HubConfig) -> Engine:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return make_engine(config.database_url)


def schema_problem(engine: Engine) -> str | None:
    """Why this code cannot serve ``engine``'s schema, in words for an operator, or None."""
    if not migrate.pending(engine):
        return None
    current = migrate.current_revision(engine)
    if current is None:
        return (
            "the database has no certhub schema yet (code needs "
            f"{migrate.head_revision()}): run `certhub db upgrade`"
        )
    return (
        f"database schema is behind (at {current}, code needs {migrate.head_revision()}): "
        "run `certhub db upgrade`"
    )


# How long the start-up Redis probe waits: a reachable Redis answers PING in a millisecond;
# a start that waits on an unreachable one more than a second helps nobody.
REDIS_PROBE_TIMEOUT_SECONDS = 1.0


def probe_redis(url: str) -> str | None:
    """None when Redis at ``url`` answers PING, else why not (for the start-up log)."""
    import redis  # noqa: PLC0415 - only hubs configured with Redis need it

    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=REDIS_PROBE_TIMEOUT_SECONDS,
        socket_timeout=REDIS_PROBE_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
    except (redis.RedisError, OSError) as e:
        return f"{type(e).__name__}: {e}"
    finally:
        client.close()
    return None


def build_hub(config: HubConfig, engine: Engine, *, cache: HolderCache | None = None) -> Hub:
    """A Hub over an up-to-date database; the caller owns ``engine`` and must close the hub."""
    problem = schema_problem(engine)
    if problem is not None:
        raise RuntimeError(problem)
    secrets = init_hub_secrets(config.data_dir)
    sessions = make_session_factory(engine)
    source = RegistrySource(sessions)
    registry = source.refresh()
    origin = registry.settings.log_origin or config.log_origin
    keys = AuditLogKeys(
        origin=origin,
        signer=NoteSigner(origin, secrets.load_log_key()),
        hmac_key=secrets.load_audit_hmac_key(),
    )
    if config.redis_url:
        # Said at start, not at the first call that finds out: the hub runs without Redis
        # (from the database, rate limits per process) until it answers.
        problem = probe_redis(config.redis_url)
        if problem is not None:
            log.warning(
                "Redis at %s is unreachable at start (%s): serving from the database until "
                "it answers",
                mask_secret("redis", config.redis_url),
                problem,
            )
    if cache is None:
        cache = build_holder_cache(
            enabled=config.cache_enabled,
            redis_url=config.redis_url,
            workers=config.workers,
            prefix=config.cache_prefix,
        )
    limiter = build_rate_limiter(
        redis_url=config.redis_url, prefix=config.cache_prefix, workers=config.workers
    )
    return Hub(
        sessions=sessions,
        registry=source,
        audit_keys=keys,
        cache=cache,
        rate_limiter=limiter,
        attestation_key=secrets.load_attestation_key(),
        reader=AsyncReader.for_engine(engine),
    )
