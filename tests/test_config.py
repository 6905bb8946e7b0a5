"""Configuration: YAML + --set overrides -> validated dataclasses; errors name path, value, allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from sprout_harness.config import (
    LinkConfig,
    PhaseConfig,
    SproutConfig,
    StackConfig,
    TopologyConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    load_yaml,
)
from sprout_harness.config.validate import validate_config
from sprout_harness.contracts import ConfigError

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ["leveldb-local", "leveldb-ephemeral", "postgres-pool", "postgres-ephemeral-ws"]


@pytest.mark.parametrize("name", REFERENCE)
def test_reference_configs_validate_with_their_stack(name):
    cfg = load_config(ROOT / "configs" / f"{name}.yaml", check_stack=True)
    assert cfg.name == name
    assert [p.name for p in cfg.phases] == ["create", "fetch", "live-limit", "writers", "churn"]
    assert cfg.topology.durable == 1


def test_reference_config_found_by_name():
    assert load_config("leveldb-local").storage.engine == "leveldb"
    assert load_config("postgres-pool.yaml").storage.pool_size == 4


def test_overrides_scalars_nested_and_phases_by_name_or_index():
    raw = load_yaml(ROOT / "configs" / "leveldb-ephemeral.yaml")
    out = apply_overrides(
        raw,
        [
            "topology.ephemeral=5",
            "seed=7",
            "storage.params.sync=true",
            "phases.fetch.params.get_ops=3",
            "phases.0.target=durable",
            "workload.live_limit=4",
            "topology.connector_params={delay_s: 0.001}",
            "description=a b c",
        ],
    )
    assert out["topology"]["ephemeral"] == 5 and out["seed"] == 7 and out["storage"]["params"]["sync"] is True
    assert out["phases"][1]["params"]["get_ops"] == 3 and out["phases"][0]["target"] == "durable"
    assert out["topology"]["connector_params"] == {"delay_s": 0.001}
    assert out["description"] == "a b c"
    assert raw["topology"]["ephemeral"] == 3  # the input is not modified
    cfg = config_from_dict(out)
    assert cfg.workload["live_limit"] == 4 and cfg.phases[0].target == "durable"


def test_bare_phase_names_expand():
    cfg = config_from_dict({"phases": ["create", "fetch"]}, ["phases.fetch.params.fetch_ops=1"])
    assert [(p.name, p.target, p.params) for p in cfg.phases] == [
        ("create", "durable", {}),
        ("fetch", "durable", {"fetch_ops": 1}),
    ]


def test_missing_phases_default_to_the_suite():
    cfg = config_from_dict({})
    assert [p.title for p in cfg.phases] == [
        "create@durable",
        "fetch@durable",
        "live-limit@durable",
        "writers@durable",
        "churn@durable",
    ]


@pytest.mark.parametrize(
    "sets, path, words",
    [
        (["topology.durable=0"], "topology.durable", ["got 0", "1..64"]),
        (["topology.ephemeral=-1"], "topology.ephemeral", ["got -1", "0..1000"]),
        (["topology.ephemeral=two"], "topology.ephemeral", ["'two'", "an integer"]),
        (["bogus=1"], "bogus", ["unknown field", "allowed fields here", "topology"]),
        (["storage.colour=red"], "storage.colour", ["unknown field", "engine"]),
        (["storage.pool_size=0"], "storage.pool_size", ["got 0", "1..1000"]),
        (["datasets.cars=10"], "datasets.cars", ["unknown dataset kind", "albums, pets"]),
        (["datasets.albums=-5"], "datasets.albums", ["-5", "0..10,000,000"]),
        (["suite=nope"], "suite", ["'nope'", "sprout"]),
        (["phases.0.name=teleport"], "phases[0].name", ["'teleport'", "churn", "create"]),
        (["phases.0.target=cloud"], "phases[0].target", ["'cloud'", "durable, ephemeral"]),
        (["phases.0.target=ephemeral"], "phases[0].target", ["topology.ephemeral is 0"]),
        (["phases.0.params.batch_size=0"], "phases[0].params.batch_size", ["got 0", ">= 1"]),
        (["phases.0.params.speed=9"], "phases[0].params.speed", ["no such knob", "batch_size"]),
        (["phases.0.params.collection=cars"], "phases[0].params.collection", ["'cars'", "albums, pets"]),
        (["workload.warp=1"], "workload.warp", ["unknown knob", "live_limit"]),
        (["workload.live_limit=0"], "workload.live_limit", ["got 0", ">= 1"]),
        (["phases.1.params.predicate_mix={magic: 1}"], "phases[1].params.predicate_mix.magic", ["equality"]),
        (["phases.1.params.predicate_mix={in: 0}"], "phases[1].params.predicate_mix", ["at least one weight"]),
        (["runner.sync_timeout_s=0"], "runner.sync_timeout_s", ["> 0"]),
        (["topology.links=[{ephemeral: 0}]"], "topology.links[0].ephemeral", ["topology.ephemeral is 0"]),
    ],
)
def test_errors_name_the_path_the_value_and_what_is_allowed(sets, path, words):
    with pytest.raises(ConfigError) as info:
        load_config(ROOT / "configs" / "leveldb-local.yaml", sets)
    msg = str(info.value)
    assert msg.startswith(path + ":"), msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize(
    "sets, expected",
    [
        (["topology.ephemral=2"], "topology.ephemral: unknown field (did you mean 'ephemeral'?)"),
        (["suite=sprot"], "suite: got 'sprot' (did you mean 'sprout'?)"),
        (["phases.0.name=creat"], "phases[0].name: got 'creat' (did you mean 'create'?)"),
        (["phases.0.params.batchsize=5"], "no such knob (did you mean 'batch_size'?)"),
        (["workload.live_limt=5"], "workload.live_limt: unknown knob (did you mean 'live_limit'?)"),
        (["datasets.album=5"], "datasets.album: unknown dataset kind (did you mean 'albums'?)"),
        (["stack.name=lom"], "stack 'lom' (did you mean 'loam'?) is not registered"),
        (["storage.engine=leveldv"], "storage.engine: got 'leveldv' (did you mean 'leveldb'?)"),
        (["topology.connector=websockets"], "(did you mean 'websocket'?)"),
        (["stack.params.max_pendin=9"], "unknown loam stack parameter (did you mean 'max_pending'?)"),
    ],
)
def test_a_near_miss_names_the_closest_known_name(sets, expected):
    with pytest.raises(ConfigError) as info:
        load_config(ROOT / "configs" / "leveldb-ephemeral.yaml", sets, check_stack=True)
    assert expected in str(info.value), str(info.value)


def test_a_far_miss_suggests_nothing_and_a_missing_config_lists_the_reference_ones():
    with pytest.raises(ConfigError) as info:
        load_config(ROOT / "configs" / "leveldb-local.yaml", ["phases.0.name=teleport"])
    assert "did you mean" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config("leveldb-locl", [])
    msg = str(info.value)
    assert "'leveldb-locl' not found (did you mean 'leveldb-local'?)" in msg
    assert "postgres-pool" in msg and "leveldb-ephemeral" in msg


def test_stack_level_errors_need_the_stack():
    base = ROOT / "configs" / "leveldb-ephemeral.yaml"
    for sets, expected in [
        (["stack.name=nonexistent"], "stack.name: stack 'nonexistent' is not registered"),
        (["stack.name=no.such.module:thing"], "cannot import module 'no.such.module'"),
        (["storage.engine=rocks"], "storage.engine: got 'rocks'; loam's storage engines: leveldb, memory, postgres"),
        (["policy.id=nobody"], "policy.id: got 'nobody'"),
        (["topology.connector=pigeon"], "connector 'pigeon' for ephemeral 0 is not a loam connector"),
        (["stack.params.colour=1"], "stack.params.colour: unknown loam stack parameter"),
        (["stack.params.max_pending=0"], "stack.params.max_pending: got 0; messages that may wait"),
    ]:
        load_config(base, sets)  # structurally fine
        with pytest.raises(ConfigError) as info:
            load_config(base, sets, check_stack=True)
        assert expected in str(info.value), str(info.value)


def test_bad_override_syntax_and_missing_items():
    for sets, expected in [
        (["topology.ephemeral"], "expected path=value"),
        (["phases.teleport.params.x=1"], "no item named 'teleport'"),
        (["phases.9.target=durable"], "index 9 out of range"),
        (["seed.x=1"], "seed is a int"),
    ]:
        with pytest.raises(ConfigError) as info:
            load_config(ROOT / "configs" / "leveldb-local.yaml", sets)
        assert expected in str(info.value)


def test_yaml_problems_are_one_clear_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("topology: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_the_same_structure_from_python():
    cfg = SproutConfig(
        name="py",
        stack=StackConfig("loam"),
        topology=TopologyConfig(
            durable=2,
            ephemeral=3,
            connector="inprocess",
            links=[LinkConfig(ephemeral=2, durable=0, connector="websocket")],
        ),
        phases=[PhaseConfig("fetch", "ephemeral"), PhaseConfig("fetch", "durable", label="fetch-d")],
    )
    validate_config(cfg, check_stack=True)
    assert cfg.topology.resolved_links() == [
        {"ephemeral": 0, "durable": 0, "connector": "inprocess", "params": {}},
        {"ephemeral": 1, "durable": 1, "connector": "inprocess", "params": {}},
        {"ephemeral": 2, "durable": 0, "connector": "websocket", "params": {}},
    ]
    cfg.phases.append(PhaseConfig("fetch", "durable", label="fetch-d"))
    with pytest.raises(ConfigError, match=r"phases\[2\].label: 'fetch-d' appears twice"):
        validate_config(cfg)


def test_every_config_field_is_documented():
    import dataclasses

    from sprout_harness.config import schema

    doc = (ROOT / "docs" / "configuration.md").read_text()
    for cls in (
        schema.SproutConfig,
        schema.StackConfig,
        schema.StorageConfig,
        schema.PolicyConfig,
        schema.TopologyConfig,
        schema.LinkConfig,
        schema.PhaseConfig,
        schema.RunnerConfig,
        schema.PlacementConfig,
    ):
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in doc, f"docs/configuration.md does not describe {cls.__name__}.{f.name}"


def test_the_config_leaves_unset_choices_to_the_stack():
    """No loam default reaches a stack: storage, policy and connectors the config does not
    set are absent from the settings (None for a link's connector), and the stack applies
    its own; an unnamed stack is an error when several are installed."""
    from sprout_harness.config.settings import stack_settings

    cfg = config_from_dict({"name": "bare", "topology": {"ephemeral": 1}, "phases": [{"name": "fetch"}]})
    settings = stack_settings(cfg)
    assert settings.storage == {} and settings.policy == {}
    assert settings.topology["links"] == [{"ephemeral": 0, "durable": 0, "connector": None, "params": {}}]
    assert cfg.stack.name == ""  # loam and pgnotify are both installed here
    with pytest.raises(ConfigError, match="stack.name: must name the stack to measure; installed: loam, pgnotify"):
        config_from_dict({"name": "bare"}, check_stack=True)
    cfg = config_from_dict(
        {"name": "set", "stack": {"name": "pgnotify"}, "storage": {"pool_size": 2}, "policy": {"params": {"x": 1}}}
    )
    assert stack_settings(cfg).storage == {"pool_size": 2} and stack_settings(cfg).policy == {"x": 1}


@pytest.mark.parametrize(
    "sets, expected",
    [
        (["storage.params.engine=leveldb"], "storage.params.engine: set storage.engine instead"),
        (["storage.params.pool_size=9"], "storage.params.pool_size: set storage.pool_size instead"),
        (["policy.params.id=owner"], "policy.params.id: set policy.id instead"),
    ],
)
def test_a_params_key_cannot_shadow_its_section(sets, expected):
    """`storage.params` and `policy.params` are flattened into the section the stack gets:
    a key named like a field of the section would silently replace it."""
    with pytest.raises(ConfigError, match=expected):
        load_config(ROOT / "configs" / "leveldb-local.yaml", sets)
