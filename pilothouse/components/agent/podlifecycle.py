"""Where one pod is in its life on this node: the state machine of the kubelet's pod worker.

pod_workers.go runs SyncPod while a pod runs, SyncTerminatingPod while it stops and
SyncTerminatedPod once it is gone; pilothouse's worker does the same, with the stage held in one
place and moving only forward:

- ``SYNCING``: drive the containers to the spec.
- ``TERMINAL``: the pod Succeeded or Failed; its containers stay stopped (their logs kept) until the
  pod is deleted.
- ``TERMINATING``: deletion was asked (``deletionTimestamp``): stop gracefully, then delete the API
  object with grace 0, which is what finally removes it.
- ``TERMINATED``: the API object (or the static manifest) is gone: stop what still runs, remove the
  containers, volumes and addresses.
- ``FINISHED``: nothing is left; the worker's loop ends.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pilothouse.machinery.meta import Object

__all__ = ["PodLifecycle", "Stage"]

TERMINAL_PHASES = ("Succeeded", "Failed")


class Stage(enum.IntEnum):
    SYNCING = 1
    TERMINAL = 2
    TERMINATING = 3
    TERMINATED = 4
    FINISHED = 5


@dataclass
class PodLifecycle:
    #: a static pod has no API object of its own: its deletion is its end, and its mirror's phase
    #: is the worker's own report
    static: bool = False
    stage: Stage = Stage.SYNCING
    #: Succeeded or Failed once decided: the status keeps that phase
    terminal_phase: str = ""

    def _advance(self, stage: Stage) -> None:
        self.stage = max(self.stage, stage)

    def observe(self, pod: Object) -> None:
        """Move on as the pod object says: its deletion, or a terminal phase written earlier."""
        if self.stage >= Stage.TERMINATING:
            return
        if pod["metadata"].get("deletionTimestamp"):
            self._advance(Stage.TERMINATED if self.static else Stage.TERMINATING)
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in TERMINAL_PHASES and not self.static:
            self.end(phase)

    def end(self, phase: str) -> None:
        """The pod reached ``phase`` (Succeeded or Failed): nothing of it runs again."""
        self.terminal_phase = phase
        self._advance(Stage.TERMINAL)

    def gone(self) -> None:
        """The API object (or the static manifest) went."""
        self._advance(Stage.TERMINATED)

    def finish(self) -> None:
        self._advance(Stage.FINISHED)

    @property
    def finished(self) -> bool:
        return self.stage is Stage.FINISHED
