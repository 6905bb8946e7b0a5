"""The harness runs the whole `sprout` suite against a second, minimal stack
(`support.stacks.DictStack`): the harness depends on the contracts only, not on loam."""

from __future__ import annotations

import pytest

from sprout_harness.config import config_from_dict
from sprout_harness.contracts import Capabilities
from sprout_harness.topology.runner import run
from support.stacks import TINY, DictClient, DictStack, NoLiveStack, Store, Sub, query_rows


async def test_sprout_suite_runs_on_a_stack_that_is_not_loam(tmp_path):
    cfg = config_from_dict(TINY)
    result = await run(cfg, factory=DictStack, json_path=tmp_path / "r.json", gab_path=tmp_path / "g.json")
    assert result.status == "ok", (result.reason, [(p.name, p.status, p.reason) for p in result.phases])
    names = [p.name for p in result.phases]
    assert names == [
        "create@ephemeral",
        "fetch@ephemeral",
        "fetch@durable",
        "live-limit@ephemeral",
        "writers@ephemeral",
        "churn@ephemeral",
    ]
    by = {p.name: p for p in result.phases}
    assert by["create@ephemeral"].counters["entities"] == 120
    assert by["fetch@ephemeral"].latencies["get"].count == 60
    assert sum(h.count for k, h in by["fetch@ephemeral"].latencies.items() if k.startswith("fetch:")) == 60
    assert by["live-limit@ephemeral"].lags["window_refill"].count >= 20
    assert by["live-limit@ephemeral"].lags["notify"].count > 0
    assert by["writers@ephemeral"].latencies["update"].count == 100
    assert by["churn@ephemeral"].counters["subscriptions"] == 8
    assert all(c.ok for p in result.phases for c in p.checks)
    assert (tmp_path / "r.json").exists() and (tmp_path / "g.json").exists()
    stack = DictStack.instances[-1]
    assert stack.closed
    assert stack.calls[:6] == [
        "start",
        "durable 0 durable-0",
        "connector 0->0 direct",
        "ephemeral 0 ephemeral-0",
        "connector 1->0 direct",
        "ephemeral 1 ephemeral-1",
    ]
    assert result.metadata.topology["links"][1] == {"ephemeral": 1, "durable": 0, "connector": "direct"}


async def test_stack_lacking_subscriptions_reports_unsupported_not_a_crash():
    cfg = config_from_dict({**TINY, "phases": TINY["phases"][:1] + TINY["phases"][3:]})
    result = await run(cfg, factory=NoLiveStack)
    status = {p.name: p.status for p in result.phases}
    assert status == {
        "create@ephemeral": "ok",
        "live-limit@ephemeral": "unsupported",
        "writers@ephemeral": "ok",
        "churn@ephemeral": "unsupported",
    }
    assert "subscribe" in result.phases[1].reason
    assert result.status == "ok"  # unsupported is not a failure


async def test_unsupported_raised_at_call_time_is_reported(monkeypatch):
    class LiesAboutLive(NoLiveStack):
        def capabilities(self) -> Capabilities:  # claims subscriptions, then raises Unsupported
            return Capabilities(subscribe=True, live_limit=True, ephemeral=True, connectors=("direct",))

    cfg = config_from_dict({**TINY, "phases": [TINY["phases"][5]]})
    result = await run(cfg, factory=LiesAboutLive)
    assert result.phases[0].status == "unsupported"
    assert "no live queries" in result.phases[0].reason


async def test_a_wrong_answer_fails_the_phase_whatever_its_speed():
    class WrongFetch(DictClient):
        async def fetch(self, collection, query):
            return (await super().fetch(collection, query))[1:]  # drops one row

    class WrongStack(DictStack):
        async def durable(self, index, context):
            self.stores.append(Store())
            return WrongFetch(self.stores[-1])

    cfg = config_from_dict(
        {
            **TINY,
            "topology": {"durable": 1, "ephemeral": 0},
            "phases": [{"name": "fetch", "params": {"get_ops": 5, "fetch_ops": 10}}],
        }
    )
    result = await run(cfg, factory=WrongStack)
    assert result.status == "failed"
    assert result.phases[0].status == "failed"
    assert "every fetch equals the expected answer" in result.phases[0].reason


async def test_a_missed_notification_fails_churn():
    class Forgetful(Sub):
        def refresh(self, commit_ns):
            self._results = query_rows(self.store.data.get(self.coll, {}), self.q)  # never notifies

    class ForgetfulClient(DictClient):
        async def subscribe(self, collection, query, callback):
            sub = Forgetful(self.store, collection, query, callback)
            self.store.subs.add(sub)
            return sub

    class ForgetfulStack(DictStack):
        async def durable(self, index, context):
            self.stores.append(Store())
            return ForgetfulClient(self.stores[-1])

    cfg = config_from_dict(
        {
            **TINY,
            "topology": {"durable": 1, "ephemeral": 0},
            "runner": {"check_timeout_s": 0.3},
            "phases": [{"name": "churn", "params": {"subscribers": 2, "cycles": 1, "hold_notifications": 2}}],
        }
    )
    result = await run(cfg, factory=ForgetfulStack)
    assert result.phases[0].status == "failed"
    assert "no live subscriber missed a notification" in result.phases[0].reason


async def test_two_durable_groups_each_get_their_own_dataset():
    cfg = config_from_dict(
        {
            **TINY,
            "topology": {
                "durable": 2,
                "ephemeral": 2,
                "connector": "direct",
                "links": [{"ephemeral": 0, "durable": 1}],
            },
            "phases": [
                {"name": "fetch", "target": "ephemeral", "params": {"get_ops": 10, "fetch_ops": 10}},
                {"name": "writers", "target": "durable", "params": {"ops": 40}},
            ],
        }
    )
    result = await run(cfg, factory=DictStack)
    assert result.status == "ok", result.reason
    stack = DictStack.instances[-1]
    assert "connector 0->1 direct" in stack.calls and "connector 1->1 direct" in stack.calls
    assert all(len(s.data["albums"]) == 300 for s in stack.stores)


class _ConnectingStack(DictStack):
    """DictStack with the `open_connection` hook: a client of the durable node's dict."""

    async def open_connection(self, durable: int, connector: str) -> DictClient:
        assert connector == "direct", connector  # the only connector it declares
        return DictClient(self.stores[durable], self.live)


async def test_a_foreign_stack_gets_its_own_defaults_not_loams():
    """Nothing the config leaves out arrives as loam's value: the link uses the stack's first
    connector, a realtime phase its first connector too; asking it for a connector it lacks
    makes the phase unsupported (not a run of failed connects)."""
    cfg = config_from_dict(
        {
            "name": "foreign",
            "stack": {"name": "dict"},
            "topology": {"durable": 1, "ephemeral": 1},
            "datasets": {"pets": 60, "albums": 0},
            "phases": [
                {
                    "name": "create",
                    "target": "ephemeral",
                    "params": {"collection": "pets", "count": 10, "batch_size": 5},
                },
                {
                    "name": "connection-scaling",
                    "label": "default",
                    "params": {"connections": 4, "steps": 1, "commits_per_step": 2},
                },
                {
                    "name": "connection-scaling",
                    "label": "websocket",
                    "params": {"connections": 4, "steps": 1, "commits_per_step": 2, "connector": "websocket"},
                },
            ],
        }
    )
    result = await run(cfg, factory=_ConnectingStack)
    stack = DictStack.instances[-1]
    assert stack.settings.storage == {} and stack.settings.policy == {}
    assert "connector 0->0 direct" in stack.calls
    assert result.metadata.connector == "direct" and result.metadata.topology["links"][0]["connector"] == "direct"
    status = {p.name: (p.status, p.reason) for p in result.phases}
    assert status["create@ephemeral"][0] == "ok" and status["default"][0] == "ok", status
    assert status["websocket"] == ("unsupported", "the stack has no connector 'websocket' (it has: direct)"), status


class _RefusingStack(_ConnectingStack):
    async def open_connection(self, durable: int, connector: str) -> DictClient:
        from sprout_harness.contracts import Unsupported

        raise Unsupported("no extra connections on this stack")


async def test_unsupported_from_open_connection_is_an_unsupported_phase_not_failed_connects():
    cfg = config_from_dict(
        {
            "name": "refusing",
            "stack": {"name": "dict"},
            "datasets": {"pets": 60, "albums": 0},
            "phases": [{"name": "connection-scaling", "params": {"connections": 6, "steps": 2, "commits_per_step": 2}}],
        }
    )
    result = await run(cfg, factory=_RefusingStack)
    (ph,) = result.phases
    assert (ph.status, ph.reason) == ("unsupported", "no extra connections on this stack"), (ph.status, ph.reason)
    assert result.status == "ok"


class _RaisingValidate(DictStack):
    @classmethod
    def validate(cls, settings):
        raise ValueError("boom")


class _WrongCapabilities(DictStack):
    def capabilities(self):
        return "not capabilities"


def test_a_validate_that_raises_anything_but_config_error_names_the_stack():
    from sprout_harness.config.validate import run_stack_validate
    from sprout_harness.contracts import ConfigError

    with pytest.raises(ConfigError) as err:
        run_stack_validate(_RaisingValidate, None, "pkg.mod:Stack")
    assert str(err.value) == (
        "stack.name: stack 'pkg.mod:Stack': validate raised ValueError: boom; a stack's "
        "validate must raise ConfigError for a setting it refuses"
    )


async def test_capabilities_of_the_wrong_type_end_the_run_with_one_line():
    result = await run(config_from_dict({**TINY, "phases": TINY["phases"][:1]}), factory=_WrongCapabilities)
    assert result.status == "error"
    assert result.reason == "stack 'dict': capabilities() returned str, not sprout_harness.contracts.Capabilities"
