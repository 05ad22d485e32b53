"""API Priority and Fairness: kube-apiserver's request filter that replaces the max-in-flight limits.

- :mod:`.matching`: which FlowSchema a request falls under (``util/flowcontrol/rule.go``).
- :mod:`.queueset`: one priority level's seats and fair queues (``fairqueuing/queueset``).
- :mod:`.controller`: the configuration read from the FlowSchemas and PriorityLevelConfigurations,
  each request's classification, and the seat it is given or the 429 it gets.
"""
