"""How far and how fast an HPA may move: stabilisation windows and scaling policies, as upstream's
horizontal.go (``stabilizeRecommendation[WithBehaviors]``, ``convertDesiredReplicasWithRules``,
``convertDesiredReplicasWithBehaviorRate``, ``calculateScale{Up,Down}Limit...``). Pure over an
:class:`History` the controller keeps per HPA in memory (upstream keeps it in memory too, so a
restarted controller forgets recent recommendations, as kube-controller-manager does)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pilothouse.machinery.meta import Object

__all__ = ["DOWNSCALE_STABILIZATION", "History", "Limited", "normalize"]


#: --horizontal-pod-autoscaler-downscale-stabilization's default, used when spec.behavior is unset.
DOWNSCALE_STABILIZATION = 300.0
#: The defaults of spec.behavior (autoscaling/v2 GenerateHPAScale{Up,Down}Rules).
_SCALE_UP: Object = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                     "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                  {"type": "Percent", "value": 100, "periodSeconds": 15}]}
_SCALE_DOWN: Object = {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}

_TOO_MANY = ("TooManyReplicas", "the desired replica count is more than the maximum replica count")
_TOO_FEW = ("TooFewReplicas", "the desired replica count is less than the minimum replica count")


@dataclass
class History:
    """Recent recommendations (time, replicas) and rescales (time, change) of one HPA."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_up_events: list[tuple[float, int]] = field(default_factory=list)
    scale_down_events: list[tuple[float, int]] = field(default_factory=list)

    def record_initial(self, now: float, current: int) -> None:
        """``recordInitialRecommendation``: a new HPA starts as if it had just recommended the current
        size, so it does not scale down before one stabilisation window has passed."""
        if not self.recommendations:
            self.recommendations.append((now, current))

    def record_rescale(self, now: float, before: int, after: int) -> None:
        events = self.scale_up_events if after > before else self.scale_down_events
        events.append((now, abs(after - before)))
        # Longest policy period Kubernetes allows is 1800 s: older events never count again.
        for kept in (self.scale_up_events, self.scale_down_events):
            kept[:] = [e for e in kept if e[0] > now - 1800]


@dataclass(frozen=True)
class Limited:
    """The outcome: the replica count to set, and the AbleToScale and ScalingLimited reasons."""

    replicas: int
    stabilized: int
    able_reason: str
    able_message: str
    limited_reason: str
    limited_message: str

    @property
    def limited(self) -> bool:
        return self.replicas != self.stabilized


def _rules(behavior: Object | None, direction: str) -> Object:
    defaults = _SCALE_UP if direction == "scaleUp" else _SCALE_DOWN
    given = (behavior or {}).get(direction) or {}
    return {**defaults, **{k: v for k, v in given.items() if v is not None}}


def _stabilize(history: History, now: float, current: int, recommended: int, up_window: float,
               down_window: float, behavior: bool) -> tuple[int, str, str]:
    """``stabilizeRecommendation[WithBehaviors]``: on the way down the highest recommendation of the
    scale-down window wins, on the way up (with spec.behavior) the lowest of the scale-up window, so a
    single busy or idle reading does not move the target. Without spec.behavior upstream takes the
    highest of the window whatever the direction."""
    if behavior and recommended >= current:
        window, pick = up_window, min
        reason = ("ScaleUpStabilized",
                  "recent recommendations were lower than current one, applying the lowest recent recommendation")
    else:
        window, pick = down_window, max
        reason = ("ScaleDownStabilized",
                  "recent recommendations were higher than current one, applying the highest recent recommendation")
    stabilized = recommended
    for at, replicas in history.recommendations:
        if at > now - window:
            stabilized = pick(stabilized, replicas)
    history.recommendations = [r for r in history.recommendations if r[0] > now - max(up_window, down_window)]
    history.recommendations.append((now, recommended))
    return stabilized, *reason


def _changed(period: float, events: list[tuple[float, int]], now: float) -> int:
    return sum(change for at, change in events if at > now - period)


def _limit(rules: Object, current: int, history: History, now: float, up: bool) -> int:
    if rules.get("selectPolicy") == "Disabled":
        return current
    pick = max if (rules.get("selectPolicy") == "Max") == up else min
    result: int | None = None
    for policy in rules.get("policies") or []:
        period = float(policy.get("periodSeconds", 15))
        start = current - _changed(period, history.scale_up_events, now) if up \
            else current + _changed(period, history.scale_down_events, now)
        value = int(policy.get("value", 0))
        if policy.get("type") == "Pods":
            proposed = start + value if up else start - value
        elif up:
            proposed = math.ceil(start * (1 + value / 100))
        else:
            proposed = int(start * (1 - value / 100))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def normalize(spec: Object, current: int, recommended: int, history: History, now: float,
              downscale_stabilization: float = DOWNSCALE_STABILIZATION) -> Limited:
    """``normalizeDesiredReplicas`` (no spec.behavior) or ``normalizeDesiredReplicasWithBehaviors``."""
    minimum, maximum = int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])
    behavior = spec.get("behavior")
    up_rules, down_rules = _rules(behavior, "scaleUp"), _rules(behavior, "scaleDown")
    up_window = float(up_rules.get("stabilizationWindowSeconds", 0))
    down_window = float(down_rules["stabilizationWindowSeconds"]) \
        if down_rules.get("stabilizationWindowSeconds") is not None else downscale_stabilization
    stabilized, *reason = _stabilize(history, now, current, recommended, up_window, down_window, behavior is not None)
    able = ("ReadyForNewScale", "recommended size matches current size") if stabilized == recommended \
        else (reason[0], reason[1])
    replicas, limited = stabilized, ("DesiredWithinRange", "the desired count is within the acceptable range")
    if stabilized > current:
        # Without spec.behavior the rate is upstream's fixed max(2*current, 4).
        limit = _limit(up_rules, current, history, now, True) if behavior is not None else max(2 * current, 4)
        allowed, possible = maximum, _TOO_MANY
        if allowed > max(limit, current):
            allowed = max(limit, current)
            possible = ("ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")
        if stabilized > allowed:
            replicas, limited = allowed, possible
    elif stabilized < current:
        limit = _limit(down_rules, current, history, now, False) if behavior is not None else minimum
        allowed, possible = minimum, _TOO_FEW
        if allowed < min(limit, current):
            allowed = min(limit, current)
            possible = ("ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate")
        if stabilized < allowed:
            replicas, limited = allowed, possible
    # The replica count is kept within minReplicas..maxReplicas whatever the rate says.
    if replicas > maximum:
        replicas, limited = maximum, _TOO_MANY
    elif replicas < minimum:
        replicas, limited = minimum, _TOO_FEW
    return Limited(replicas, stabilized, *able, *limited)
