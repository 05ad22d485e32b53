"""Pod Security levels, versions and namespace policies (k8s.io/pod-security-admission ``api``),
and the evaluator that picks the checks of a level at a version (``policy/registry.go``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pilothouse.machinery.errors import FieldError
from pilothouse.machinery.podsecurity.checks import CHECKS, Check, CheckFn, Result

__all__ = ["LABEL_PREFIX", "LEVELS", "Level", "LevelVersion", "Policy", "aggregate", "compare_levels",
           "evaluate", "parse_policy"]

Level = Literal["privileged", "baseline", "restricted"]
LEVELS: tuple[Level, ...] = ("privileged", "baseline", "restricted")
LABEL_PREFIX = "pod-security.kubernetes.io/"
_VERSION = re.compile(r"^v1\.([0-9]|[1-9][0-9]*)$")


@dataclass(frozen=True)
class LevelVersion:
    level: Level = "privileged"
    #: The minor version of 1.x, or None for "latest".
    version: int | None = None

    def __str__(self) -> str:
        return f"{self.level}:{'latest' if self.version is None else f'v1.{self.version}'}"


@dataclass(frozen=True)
class Policy:
    enforce: LevelVersion = LevelVersion()
    audit: LevelVersion = LevelVersion()
    warn: LevelVersion = LevelVersion()

    def fully_privileged(self) -> bool:
        return all(lv.level == "privileged" for lv in (self.enforce, self.audit, self.warn))


def compare_levels(a: Level, b: Level) -> int:
    return LEVELS.index(a) - LEVELS.index(b)


def parse_policy(labels: dict[str, str] | None, default: Policy = Policy()) -> tuple[Policy, list[FieldError]]:
    """api.PolicyToEvaluate: the namespace's policy from its labels, and what is wrong with them.

    A bad enforce level enforces restricted (fail closed); bad audit or warn levels mean privileged
    (fail open); a bad version means latest. Without a warn label, warn is raised to enforce.
    """
    errors: list[FieldError] = []
    labels = labels or {}
    modes: dict[str, LevelVersion] = {"enforce": default.enforce, "audit": default.audit, "warn": default.warn}
    valid_level: dict[str, bool] = {}
    for mode in modes:
        level, version = modes[mode].level, modes[mode].version
        if (raw := labels.get(LABEL_PREFIX + mode)) is not None:
            valid_level[mode] = raw in LEVELS
            if raw in LEVELS:
                level = raw
            else:
                level = "restricted" if mode == "enforce" else "privileged"
                errors.append(_invalid(mode, raw, "must be one of " + ", ".join(LEVELS)))
        if (raw := labels.get(f"{LABEL_PREFIX}{mode}-version")) is not None:
            match = _VERSION.match(raw)
            version = int(match.group(1)) if match else None
            if raw != "latest" and match is None:
                errors.append(_invalid(f"{mode}-version", raw, 'must be "latest" or "v1.x"'))
        modes[mode] = LevelVersion(level, version)
    enforce, warn = modes["enforce"], modes["warn"]
    if "warn" not in valid_level and valid_level.get("enforce") and compare_levels(enforce.level, warn.level) > 0:
        has_warn_version = f"{LABEL_PREFIX}warn-version" in labels
        modes["warn"] = LevelVersion(enforce.level, warn.version if has_warn_version else enforce.version)
    return Policy(modes["enforce"], modes["audit"], modes["warn"]), errors


def _invalid(label: str, value: str, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", f"metadata.labels[{LABEL_PREFIX}{label}]", detail, value)


# -- the evaluator -----------------------------------------------------------------------------

_MAX_VERSION = max(check.versions[-1][0] for check in CHECKS)
# Baseline checks first, then restricted, each in ID order (byte order, as Go's sort.Strings).
_ORDER = sorted((c for c in CHECKS), key=lambda c: (c.level != "baseline", c.id))


def _at(check: Check, version: int) -> CheckFn | None:
    chosen = None
    for minimum, fn in check.versions:
        if minimum <= version:
            chosen = fn
    return chosen


def _checks_for(level: Level, version: int) -> list[CheckFn]:
    active = {c.id: fn for c in _ORDER if c.level == "baseline" or level == "restricted"
              if (fn := _at(c, version)) is not None}
    if level == "restricted":
        for check in _ORDER:
            if check.level == "restricted" and check.id in active:
                for overridden in check.overrides:
                    active.pop(overridden, None)
    return [active[c.id] for c in _ORDER if c.id in active]


_TABLE: dict[tuple[Level, int], list[CheckFn]] = {
    (level, version): _checks_for(level, version)
    for level in ("baseline", "restricted") for version in range(_MAX_VERSION + 1)}


def evaluate(lv: LevelVersion, metadata: dict[str, Any] | None, spec: dict[str, Any] | None) -> list[Result]:
    """The failed checks of ``lv`` for a pod's (or template's) metadata and spec."""
    if lv.level == "privileged":
        return []
    version = _MAX_VERSION if lv.version is None or lv.version > _MAX_VERSION else lv.version
    metadata, spec = metadata or {}, spec or {}
    return [result for check in _TABLE[(lv.level, version)] if (result := check(metadata, spec)) is not None]


def aggregate(results: list[Result]) -> tuple[str, str]:
    """(ForbiddenReason, ForbiddenDetail) of AggregateCheckResult."""
    reasons = [r.reason or "unknown forbidden reason" for r in results]
    details = [f"{reason} ({r.detail})" if r.detail else reason for reason, r in zip(reasons, results, strict=True)]
    return ", ".join(reasons), ", ".join(details)
