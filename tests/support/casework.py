"""``certhub.hub.casework.Casework`` driven from a test's thread: each use case runs on the hub
server's loop (RunningHub.run), as a servicer would run it."""

from __future__ import annotations

from certhub.hub.casework import Casework, CloseCaseOutput, RegisterCaseOutput
from certhub.hub.registry import Principal
from certhub.hub.services import cases, stats
from support.hubs import RunningHub


class SyncCasework:
    def __init__(self, running: RunningHub) -> None:
        self.running = running
        self.work = Casework(running.hub)
        self.hub = running.hub

    def register_case(self, caller: Principal, request: cases.RegisterInput) -> RegisterCaseOutput:
        return self.running.run(self.work.register_case(caller, request))

    def close_case(self, caller: Principal, request: cases.CloseInput) -> CloseCaseOutput:
        return self.running.run(self.work.close_case(caller, request))

    def period_stats(self, query: stats.StatsQuery) -> stats.PeriodStats:
        return self.running.run(self.work.period_stats(query))
