"""The agent tests' engine fixtures (podman's service, the busybox image), for the end-to-end test
with real pods."""

from tests.agent.conftest import busybox_image, podman

__all__ = ["busybox_image", "podman"]
