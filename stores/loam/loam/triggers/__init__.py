"""Server-side triggers: predicates evaluated on every commit, matches POSTed to webhooks."""

from loam.triggers.manager import Delivery, Trigger, TriggerManager, TriggerStats

__all__ = ["Delivery", "Trigger", "TriggerManager", "TriggerStats"]
