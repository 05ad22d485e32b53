"""A pod's volumes: written once before its first container starts, and rewritten when a service
account token in them is due (the kubelet remounts projected volumes at its syncs, and the token
manager hands out a new token after 80% of the old one's life)."""

from __future__ import annotations

from pathlib import Path

from pilothouse.components.agent.podcontext import PodContext, SyncRound, no_fetch
from pilothouse.components.agent.satoken import TokenManager, requester_for
from pilothouse.components.agent.volumes import VolumeError, prepare_volumes
from pilothouse.machinery.meta import Object

__all__ = ["PodVolumes"]


class PodVolumes:
    def __init__(self, ctx: PodContext, uid: str) -> None:
        self.ctx = ctx
        self.uid = uid
        self._paths: dict[str, Path] | None = None  # volume name -> host path, once prepared

    def _tokens(self) -> TokenManager:
        if self.ctx.tokens is None:
            self.ctx.tokens = TokenManager(requester_for(self.ctx.client))
        return self.ctx.tokens

    async def prepare(self, pod: Object, pod_ip: str) -> dict[str, Path]:
        """The pod's volumes by name, written the first time (raises VolumeError)."""
        if self._paths is None:
            ctx = self.ctx
            self._paths = await prepare_volumes(pod, ctx.root_dir, ctx.fetch or no_fetch, pod_ip=pod_ip,
                                                host_ip=ctx.host_ip, tokens=self._tokens(),
                                                allocatable=ctx.allocatable)
        return self._paths

    async def refresh_tokens(self, pod: Object, pod_ip: str | None, sync: SyncRound) -> None:
        """Rewrite the volumes once a token in them is due, and wake up again for the next one."""
        ctx = self.ctx
        tokens = ctx.tokens
        due = tokens.next_refresh(self.uid) if tokens is not None and self._paths is not None else None
        if tokens is None or due is None:
            return
        if due <= tokens.now():
            try:
                await prepare_volumes(pod, ctx.root_dir, ctx.fetch or no_fetch, pod_ip=pod_ip or ctx.host_ip,
                                      host_ip=ctx.host_ip, allocatable=ctx.allocatable, tokens=tokens)
            except VolumeError as error:
                ctx.pod_event(pod, "Warning", "FailedMount", str(error))
                sync.wake_in(5.0)
                return
            due = tokens.next_refresh(self.uid) or due
        sync.wake_in((due - tokens.now()).total_seconds())
