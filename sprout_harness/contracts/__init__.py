"""What a stack under test must provide, and the client surface workloads use.

Nothing here knows about any particular stack: a stack plugs in through `Stack` (see
docs/plugins.md), registered under the entry point group `sprout_harness.stacks`.
"""

from sprout_harness.contracts.client import (
    Capabilities,
    Client,
    Doc,
    Notification,
    NotificationCallback,
    Subscription,
    WriteAck,
)
from sprout_harness.contracts.errors import CheckFailed, ConfigError, SproutError, StackError, Unsupported, did_you_mean
from sprout_harness.contracts.query import AllOf, AnyOf, Cond, InList, Not, Order, QuerySpec
from sprout_harness.contracts.stack import DelaySink, Link, Stack, StackFactory, StackSettings

__all__ = [
    "AllOf",
    "AnyOf",
    "Capabilities",
    "CheckFailed",
    "Client",
    "Cond",
    "ConfigError",
    "DelaySink",
    "Doc",
    "InList",
    "Link",
    "Not",
    "Notification",
    "NotificationCallback",
    "Order",
    "QuerySpec",
    "SproutError",
    "Stack",
    "StackError",
    "StackFactory",
    "StackSettings",
    "Subscription",
    "Unsupported",
    "WriteAck",
    "did_you_mean",
]
