"""The `sprout` command line: run, validate, list, compare, gate, merge, noise, report, asv init.

Every error a user can cause (bad config, unreachable server, a stack that cannot be
loaded, unreadable report) prints one line `error: ...` and exits non-zero; set
SPROUT_DEBUG=1 to see tracebacks. Exit codes: 0 ok; 1 failed checks, run error or a
significant regression; 2 bad usage, config or input (an unreadable report, reports that
cannot be compared); 99 a threshold of the config crossed (the run itself ok); 130
interrupted.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from sprout_harness.config.text import one_line
from sprout_harness.config.validate import MAX_REPEAT, MAX_WARMUP, phase_knobs
from sprout_harness.contracts.errors import ConfigError, SproutError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_THRESHOLDS = 99  # as k6: the run itself was fine, a threshold of the config was crossed


def _count(value: str, option: str, lo: int, hi: int) -> int:
    """A whole-number option within [lo, hi] (text, so a bad value gets one line naming it)."""
    try:
        n = int(value.strip())
    except ValueError:
        raise ConfigError(f"got {value!r}; expected a whole number {lo}..{hi}", option) from None
    if not lo <= n <= hi:
        raise ConfigError(f"got {n}; must be {lo}..{hi}", option)
    return n


def finish_result(result: Any, cfg: Any) -> None:
    """Judge the config's thresholds on a finished result (single or merged runs)."""
    if cfg.thresholds:
        from sprout_harness.metrics.thresholds import evaluate

        result.thresholds = evaluate(result, cfg.thresholds)


def _gate_settings(threshold: str, alpha: str) -> tuple[float, float]:
    """``--threshold`` and ``--alpha`` of compare, gate and noise, each error naming its option."""
    from sprout_harness.reports import compare as cmp

    try:
        limit = cmp.parse_threshold(threshold)
    except ValueError as exc:
        raise ConfigError(str(exc), "--threshold") from None
    try:
        level = cmp.parse_alpha(alpha)
    except ValueError as exc:
        raise ConfigError(str(exc), "--alpha") from None
    return limit, level


def _runs_a_side(value: str | None, option: str, level: float) -> int:
    """Runs a side for the rank test (default: the fewest that can reach ``level``); a count
    that cannot reach it is refused naming ``option``."""
    from sprout_harness.metrics import stats

    k = stats.runs_needed(level) if value is None else _count(value, option, 2, MAX_REPEAT)
    if stats.min_p_value(k, k) > level:
        raise ConfigError(
            f"got {k}; {k} runs a side cannot reach alpha {level:g} (needs {stats.runs_needed(level)})", option
        )
    return k


def _judge(
    base: Any,
    new: Any,
    limit: float,
    level: float,
    html_path: str | None,
    warnings: list[str],
    allow_load_change: bool = False,
) -> None:
    """Compare two comparable reports, print the table (and the page), exit 0 / 1 (2 when
    they have no figure in common, or when a regression sits on a side that ran while other
    processes loaded the machine far more: `reports.compare.load_difference`): the verdict
    of both `compare` and `gate`."""
    from rich.console import Console

    from sprout_harness.reports import compare as cmp

    comparison = cmp.compare_runs(base, new, limit, level)
    comparison.warnings[:0] = warnings
    if not comparison.deltas:
        _fail(
            "the two reports have no metric in common (0 compared): nothing to gate on; check that both "
            "runs measured the same phases",
            EXIT_USAGE,
        )
    cmp.render(comparison, Console())
    if html_path:
        from sprout_harness.reports import html as html_report

        html_report.write_compare_html(comparison, base, new, html_path)
        click.echo(f"html comparison: {html_path}", err=True)
    busier = cmp.load_difference(base, new) if comparison.regressed and not allow_load_change else None
    if busier is not None:
        _fail(
            f"not comparable: {busier}; rerun both sides, gate with `sprout gate` (it alternates them), or "
            "pass --allow-load-change",
            EXIT_USAGE,
        )
    sys.exit(EXIT_FAILED if comparison.regressed else EXIT_OK)


def _version() -> str:
    from sprout_harness.topology.runner import sprout_version

    return sprout_version()


def _fail(message: str, code: int) -> None:
    # one inert line: a config value quoted in it may be huge or carry escape sequences
    click.echo(f"error: {one_line(message, 500)}", err=True)
    sys.exit(code)


def _report_interrupted_load(config: str, json_path: str | None, gab_path: str | None) -> None:
    """Ctrl+C before the config was loaded: the reports asked for still say what happened."""
    from sprout_harness.metrics.results import RunMetadata, RunResult, new_run_id
    from sprout_harness.reports import gab, json_report

    now = time.time()
    meta = RunMetadata(
        run_id=new_run_id(),
        config_name=Path(config).stem,
        started_at=now,
        ended_at=now,
        sprout_version=_version(),
    )
    result = RunResult(meta, status="cancelled", reason="interrupted (Ctrl+C) while loading the config; no phase ran")
    for path, writer in ((json_path, json_report.write), (gab_path, gab.write)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            writer(result, path)


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One clear line instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            _fail(str(exc), EXIT_USAGE)
        except SproutError as exc:
            _fail(str(exc), EXIT_FAILED)
        except KeyboardInterrupt:
            _fail("interrupted", EXIT_INTERRUPTED)
        except BrokenPipeError:
            _quiet_broken_pipe()
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("SPROUT_DEBUG"):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            _fail(f"{type(exc).__name__}: {first} (set SPROUT_DEBUG=1 for the traceback)", EXIT_FAILED)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=_version(), prog_name="sprout", message="%(prog)s %(version)s")
def cli() -> None:
    """Sprout: benchmark a reactive, local-first document store on a configured topology."""


set_option = click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="PATH=VALUE",
    help="override a config field, e.g. --set topology.ephemeral=2 (repeatable)",
)


@cli.command()
@click.argument("config")
@set_option
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write the full JSON report here")
@click.option("--gab", "gab_path", type=click.Path(dir_okay=False), help="write github-action-benchmark JSON here")
@click.option("--quiet", "-q", is_flag=True, help="no progress bars and no table: one summary line")
@click.option("--verbose", "-v", is_flag=True, help="per-op details, checks and what the runner does")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    help="write the self-contained HTML report (charts, works offline) here",
)
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(dir_okay=False),
    help="write JUnit XML here: each check and threshold a test case (GitLab, GitHub, Jenkins read it)",
)
@click.option(
    "--csv",
    "csv_dir",
    type=click.Path(file_okay=False),
    help="write metrics.csv (a row per figure per phase) and counters.csv into this directory",
)
@click.option(
    "--prometheus-push",
    "push_url",
    metavar="URL",
    help="push the finished run to this Prometheus Pushgateway (job sprout, grouped by run id)",
)
@click.option("--monitor", is_flag=True, help="serve a live dashboard, JSON API and Prometheus /metrics during the run")
@click.option(
    "--monitor-addr",
    default="127.0.0.1:9090",
    show_default=True,
    metavar="HOST:PORT",
    help="where the monitor listens; port 0 picks a free port",
)
@click.option("--monitor-public", is_flag=True, help="allow a non-loopback --monitor-addr (needs --monitor-token)")
@click.option("--monitor-token", metavar="TOKEN", help="token every monitor request must carry")
@click.option(
    "--monitor-linger",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="seconds the monitor keeps serving after the run so dashboards see the end",
)
@click.option(
    "--repeat",
    "repeat",
    type=str,
    default=None,
    metavar="N",
    help="N independent runs, each in a fresh process, merged (default: runner.repeat, 1)",
)
@click.option(
    "--warmup",
    "warmup",
    type=str,
    default=None,
    metavar="K",
    help="K discarded warm-up runs before them (default: runner.warmup, 0)",
)
@friendly_errors
def run(
    config: str,
    sets: tuple[str, ...],
    json_path: str | None,
    gab_path: str | None,
    quiet: bool,
    verbose: bool,
    html_path: str | None = None,
    monitor: bool = False,
    monitor_addr: str = "127.0.0.1:9090",
    monitor_public: bool = False,
    monitor_token: str | None = None,
    monitor_linger: float = 2.0,
    repeat: str | None = None,
    warmup: str | None = None,
    junit_path: str | None = None,
    csv_dir: str | None = None,
    push_url: str | None = None,
) -> None:
    """Run the phases of CONFIG (a YAML file or a reference config name) and report.

    Exit 0: ok; 1: a check failed, the run broke or the push to --prometheus-push failed;
    2: bad config or usage; 99: the run was ok but one of the config's thresholds was
    crossed; 130: interrupted.
    """
    from rich.console import Console

    from sprout_harness.config import load_config
    from sprout_harness.reports import console as console_report
    from sprout_harness.topology.runner import run_sync

    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose exclude each other")
    if repeat is not None:
        sets += (f"runner.repeat={_count(repeat, '--repeat', 1, MAX_REPEAT)}",)
    if warmup is not None:
        sets += (f"runner.warmup={_count(warmup, '--warmup', 0, MAX_WARMUP)}",)
    try:
        cfg = load_config(config, sets, check_stack=True)
    except KeyboardInterrupt:  # a stack's validate may take a while (probing addresses, DSNs)
        _report_interrupted_load(config, json_path, gab_path)
        raise
    repeated = cfg.runner.repeat > 1 or cfg.runner.warmup > 0
    out = Console()
    err = Console(stderr=True)

    def progress(title: str) -> Any:
        return console_report.PhaseProgress(err, title, None, quiet=quiet)

    def log(message: str) -> None:
        if verbose:
            err.print(f"[dim]{message}[/dim]")

    for p in (json_path, gab_path):
        if p:
            Path(p).parent.mkdir(parents=True, exist_ok=True)
    if repeated and monitor:
        raise ConfigError(
            "watches one process and cannot follow repeated runs; drop --monitor or run once", "--monitor"
        )
    if repeated:
        from sprout_harness.reports import gab, json_report
        from sprout_harness.topology.repeat import run_repeated

        def event(line: str) -> None:
            if not quiet:
                err.print(f"[dim]{line}[/dim]")

        result = run_repeated(cfg, repeat=cfg.runner.repeat, warmup=cfg.runner.warmup, on_event=event)
        finish_result(result, cfg)
        for p, writer in ((json_path, json_report.write), (gab_path, gab.write)):
            if p:
                writer(result, p)
    elif monitor:
        from sprout_harness.monitor import MonitorConfigError, check_exposure, parse_addr, run_monitored_sync

        try:
            host, port = parse_addr(monitor_addr)
            check_exposure(host, monitor_public, monitor_token)
        except MonitorConfigError as exc:
            raise ConfigError(str(exc), "--monitor-addr") from None
        try:
            result = run_monitored_sync(
                cfg,
                host=host,
                port=port,
                public=monitor_public,
                token=monitor_token,
                linger_s=monitor_linger,
                on_ready=lambda url: click.echo(f"monitor: {url}", err=True),
                progress=progress,
                log=log,
                json_path=json_path,
                gab_path=gab_path,
            )
        except MonitorConfigError as exc:
            raise ConfigError(str(exc), "--monitor-addr") from None
    else:
        result = run_sync(cfg, progress=progress, log=log, json_path=json_path, gab_path=gab_path)
    if quiet:
        click.echo(f"{cfg.name}: {result.status}" + (f" ({result.reason})" if result.reason else ""))
    else:
        console_report.render(result, console=out, verbose=verbose)
        if result.thresholds:
            from sprout_harness.reports import thresholds as thresholds_report

            thresholds_report.render(result.thresholds, out)
    if html_path:
        from sprout_harness.reports import html as html_report

        html_report.write_html(result, html_path)
    if junit_path:
        from sprout_harness.reports import junit

        junit.write(result, junit_path)
    if csv_dir:
        from sprout_harness.reports import csv_report

        csv_report.write(result, csv_dir)
    for label, p in (
        ("json report", json_path),
        ("gab report", gab_path),
        ("html report", html_path),
        ("junit report", junit_path),
        ("csv reports", csv_dir),
    ):
        if p and not quiet:
            err.print(f"{label}: {p}")
    push_error = None
    if push_url:
        from sprout_harness.monitor import push

        try:
            push.push(result, push_url)
            if not quiet:
                err.print(f"pushed to {push_url} (job {push.DEFAULT_JOB}, run_id {result.metadata.run_id})")
        except (OSError, ValueError) as exc:
            push_error = f"error: --prometheus-push: cannot push to {push_url}: {exc}"
    if result.status == "ok" and push_error:
        click.echo(push_error, err=True)
        sys.exit(EXIT_FAILED)
    if push_error:
        click.echo(push_error, err=True)
    if result.status == "ok":
        if result.thresholds_failed:
            click.echo(
                f"error: {len(result.thresholds_failed)} threshold(s) crossed: "
                + "; ".join(f"{t.pattern} {t.stat} {t.expression}" for t in result.thresholds_failed),
                err=True,
            )
            sys.exit(EXIT_THRESHOLDS)
        sys.exit(EXIT_OK)
    if result.status == "cancelled":
        click.echo("error: interrupted; partial results" + (f" written to {json_path}" if json_path else ""), err=True)
        sys.exit(EXIT_INTERRUPTED)
    click.echo(f"error: run {result.status}: {result.reason}", err=True)
    sys.exit(EXIT_FAILED)


@cli.command()
@click.argument("config")
@set_option
@friendly_errors
def validate(config: str, sets: tuple[str, ...]) -> None:
    """Check CONFIG without running anything (the dry run)."""
    from sprout_harness.config import load_config
    from sprout_harness.topology.runner import topology_summary

    cfg = load_config(config, sets, check_stack=True)
    topo = topology_summary(cfg)
    default = "(the stack's default)"
    links = (
        ", ".join(f"e{l['ephemeral']}->d{l['durable']} {l['connector'] or default}" for l in topo["links"])
        or "no links"
    )
    click.echo(f"{cfg.name}: ok")
    click.echo(
        f"  stack {cfg.stack.name}, storage {cfg.storage.engine or default}, "
        f"policy {cfg.policy.id or default}, seed {cfg.seed}"
    )
    click.echo(f"  topology: {topo['durable']} durable, {topo['ephemeral']} ephemeral ({links})")
    click.echo(f"  datasets: {', '.join(f'{k}={v}' for k, v in cfg.datasets.items()) or 'none'}")
    click.echo("  phases (knobs the config sets; then the defaults):")

    def pairs(d: dict[str, Any]) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in d.items())

    for ph, given, rest in phase_knobs(cfg):
        click.echo(f"    {ph.title}: {pairs(given) or '-'}" + (f"; defaults {pairs(rest)}" if rest else ""))


@cli.command(name="list")
@friendly_errors
def list_() -> None:
    """List installed stacks, the workload catalog (phases, suites) and reference configs."""
    from sprout_harness import plugins
    from sprout_harness.config.load import CONFIG_DIR
    from sprout_harness.workloads import catalog, datasets

    click.echo("stacks (entry point group sprout_harness.stacks):")
    entries = plugins.stack_entries()
    for e in entries:
        click.echo(f"  {e.name:<22} {e.target}")
    if not entries:
        click.echo("  (none installed: install a stack's package, see docs/plugins.md)")
    click.echo("phases:")
    for name, spec in sorted(catalog.phases().items()):
        click.echo(f"  {name:<22} {spec.summary}")
        knobs = ", ".join(f"{k}={v!r}" for k, v, _ in catalog.knob_docs(spec))
        click.echo(f"  {'':<22} knobs: {knobs}")
    click.echo("suites:")
    for name, suite in sorted(catalog.suites().items()):
        click.echo(f"  {name:<22} {' -> '.join(s.name for s in suite.phases)}")
    click.echo(f"datasets: {', '.join(datasets.kinds())}")
    # the reference configs sit beside the harness in a source checkout, not in a wheel
    if CONFIG_DIR.is_dir():
        click.echo(f"configs ({CONFIG_DIR}):")
        for p in sorted(CONFIG_DIR.glob("*.yaml")):
            click.echo(f"  {p.stem}")


@cli.command()
@click.argument("base", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
@click.option(
    "--threshold",
    default="10%",
    show_default=True,
    help="smallest slowdown that counts, e.g. 10% or 0.1 (see `sprout noise` for what this machine supports)",
)
@click.option("--alpha", default="0.01", show_default=True, help="significance level of each metric's test")
@click.option(
    "--allow-mismatch", is_flag=True, help="compare reports of different configs, stacks, topologies or datasets"
)
@click.option("--allow-host-change", is_flag=True, help="compare reports made on different machines")
@click.option(
    "--allow-load-change",
    is_flag=True,
    help="judge a regression even when other processes loaded the machine far more on one side",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    help="also write a self-contained comparison page (side-by-side charts) here",
)
@friendly_errors
def compare(
    base: str,
    new: str,
    threshold: str,
    alpha: str = "0.01",
    allow_mismatch: bool = False,
    allow_host_change: bool = False,
    allow_load_change: bool = False,
    html_path: str | None = None,
) -> None:
    """Compare two JSON reports statistically (docs/statistics.md).

    Exit 0: no significant regression; 1: a regression (or a phase broke); 2: could not
    compare (unreadable report, different config or host, nothing in common, or a regression
    on a side that ran while other processes took far more of the CPU).
    """
    from sprout_harness.metrics.results import load_run
    from sprout_harness.reports import compare as cmp

    limit, level = _gate_settings(threshold, alpha)
    try:
        a, b = load_run(base), load_run(new)
        warnings = cmp.check_comparable(a, b, allow_mismatch=allow_mismatch, allow_host_change=allow_host_change)
    except (OSError, ValueError) as exc:
        _fail(str(exc), EXIT_USAGE)
    _judge(a, b, limit, level, html_path, warnings, allow_load_change)


@cli.command()
@click.argument("config")
@set_option
@click.option("--runs", default="5", show_default=True, metavar="N", help="runs of CONFIG, each in a fresh process")
@click.option("--threshold", default="10%", show_default=True, help="the threshold you plan to gate with")
@click.option("--alpha", default="0.01", show_default=True, help="the significance level you plan to gate with")
@click.option(
    "--gate-repeat",
    default=None,
    metavar="K",
    help="runs a side the gate will compare (default: the fewest that can reach --alpha, 5 at 0.01)",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="keep the repeated run's JSON report here")
@friendly_errors
def noise(
    config: str,
    sets: tuple[str, ...],
    runs: str,
    threshold: str,
    alpha: str,
    gate_repeat: str | None,
    json_path: str | None,
) -> None:
    """Run CONFIG N times and show what this machine can detect: each figure's run-to-run
    spread, the smallest slowdown the gate would catch, and a threshold that gives no false
    alarms on these runs. Exit 0, 1 when a run failed, 2 bad usage."""
    from rich.console import Console

    from sprout_harness.config import load_config
    from sprout_harness.metrics.noise import noise_rows, suggest
    from sprout_harness.reports import json_report
    from sprout_harness.reports import noise as noise_report
    from sprout_harness.topology.repeat import run_repeated

    n = _count(runs, "--runs", 2, MAX_REPEAT)
    limit, level = _gate_settings(threshold, alpha)
    k = _runs_a_side(gate_repeat, "--gate-repeat", level)
    cfg = load_config(config, sets, check_stack=True)
    err = Console(stderr=True)
    result = run_repeated(
        cfg, repeat=n, warmup=cfg.runner.warmup, on_event=lambda line: err.print(f"[dim]{line}[/dim]")
    )
    if json_path:
        json_report.write(result, json_path)
    if result.status == "cancelled":
        _fail("interrupted; partial results" + (f" written to {json_path}" if json_path else ""), EXIT_INTERRUPTED)
    if result.status != "ok":
        _fail(f"run {result.status}: {result.reason}", EXIT_FAILED)
    rows = noise_rows(result)
    noise_report.render(rows, suggest(rows, limit, level, k), len(result.runs), level, Console())


@cli.command()
@click.argument("config")
@set_option
@click.option(
    "--base-sprout",
    required=True,
    metavar="PATH",
    help="the `sprout` executable of the base build (e.g. ../base/.venv/bin/sprout)",
)
@click.option("--runs", default="5", show_default=True, metavar="N", help="runs per side, alternating ABBA")
@click.option("--threshold", default="10%", show_default=True, help="smallest slowdown that counts")
@click.option("--alpha", default="0.01", show_default=True, help="significance level of each metric's test")
@click.option("--out-dir", type=click.Path(file_okay=False), help="keep base.json and new.json (merged reports) here")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="write the comparison page here")
@friendly_errors
def gate(
    config: str,
    sets: tuple[str, ...],
    base_sprout: str,
    runs: str,
    threshold: str,
    alpha: str,
    out_dir: str | None,
    html_path: str | None,
) -> None:
    """The pull-request gate: the base build and this one run CONFIG in turn (ABBA, each run
    a fresh process), then the merged reports are compared as `sprout compare` does.

    Exit 0: no significant regression; 1: a regression, or a run of this build failed;
    2: could not compare (bad usage, a base run failed, different hosts); 130: interrupted.
    """
    import shutil

    from rich.console import Console

    from sprout_harness.config import load_config
    from sprout_harness.reports import compare as cmp
    from sprout_harness.reports import json_report
    from sprout_harness.topology.gate import run_gate

    exe = shutil.which(base_sprout)
    if exe is None:
        raise ConfigError(
            f"{base_sprout!r} is not an executable; point it at the base build's sprout "
            "(e.g. ../base/.venv/bin/sprout after `make -C ../base venv`)",
            "--base-sprout",
        )
    limit, level = _gate_settings(threshold, alpha)
    n = _runs_a_side(runs, "--runs", level)
    cfg = load_config(config, sets, check_stack=True)
    err = Console(stderr=True)
    res = run_gate(cfg, config, sets, base_sprout=exe, runs=n, on_event=lambda line: err.print(f"[dim]{line}[/dim]"))
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        for name, r in (("base", res.base), ("new", res.new)):
            if r is not None:
                json_report.write(r, Path(out_dir) / f"{name}.json")
    if res.cancelled:
        _fail("interrupted; nothing compared", EXIT_INTERRUPTED)
    if res.failed:
        _fail(res.failed, EXIT_FAILED if res.failed.startswith("new") else EXIT_USAGE)
    assert res.base is not None and res.new is not None
    try:
        cmp.check_comparable(res.base, res.new)
    except cmp.NotComparable as exc:
        _fail(str(exc), EXIT_USAGE)
    _judge(res.base, res.new, limit, level, html_path, [])


@cli.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False))
@friendly_errors
def merge(out: str, reports: tuple[str, ...]) -> None:
    """Merge JSON REPORTS of one config into one repeated report OUT, e.g. runs made in turn
    with another build (base, new, base, new, ...) so drift of the machine hits both sides
    alike. Exit 0, 2 when a report cannot be read or measured something else."""
    from sprout_harness.metrics.merge import merge_runs
    from sprout_harness.metrics.results import load_run
    from sprout_harness.reports import compare as cmp
    from sprout_harness.reports import json_report

    try:
        runs = [load_run(p) for p in reports]
        for p, r in zip(reports[1:], runs[1:]):
            try:
                cmp.check_comparable(runs[0], r)
            except cmp.NotComparable as exc:
                why = str(exc).split(";")[0].replace("base and new differ", f"it and {reports[0]} differ")
                raise ValueError(f"{p}: {why}; merge reports of one config and machine only") from None
    except (OSError, ValueError) as exc:
        _fail(str(exc), EXIT_USAGE)
    merged = merge_runs(runs)
    json_report.write(merged, out)
    click.echo(f"{out}: {len(merged.runs)} runs from {len(reports)} report(s), status {merged.status}")


@cli.command()
@click.argument("run_json", type=click.Path(dir_okay=False))
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    help="write the self-contained HTML report (charts, works offline) here",
)
@click.option("--verbose", "-v", is_flag=True, help="errors' samples, timelines and notes too")
@friendly_errors
def report(run_json: str, html_path: str | None, verbose: bool) -> None:
    """Show the results table of a JSON report (written by `sprout run --json`); --html writes the HTML report."""
    from rich.console import Console

    from sprout_harness.metrics.results import load_run
    from sprout_harness.reports import console as console_report

    try:
        result = load_run(run_json)
    except (OSError, ValueError) as exc:
        _fail(str(exc), EXIT_USAGE)  # bad input, as a missing config is
    console_report.render(result, console=Console(), verbose=verbose)
    if html_path:
        from sprout_harness.reports import html as html_report

        html_report.write_html(result, html_path)
        click.echo(f"html report: {html_path}", err=True)


@cli.group()
def asv() -> None:
    """asv tooling: track the harness's benchmark families over a store's own commits."""


@asv.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option(
    "--stack",
    "stacks",
    multiple=True,
    metavar="NAME",
    help="a stack to benchmark (repeatable; default: the installed stacks the project registers)",
)
@click.option(
    "--harness-wheel",
    type=click.Path(dir_okay=False),
    help="a wheel of the installed sprout-harness: copied into .asv/wheels/ for asv's environments",
)
@click.option(
    "--find-links", type=click.Path(file_okay=False), help="a directory of wheels that holds the pinned sprout-harness"
)
@click.option("--force", is_flag=True, help="overwrite an existing asv.conf.json")
@friendly_errors
def asv_init(
    directory: str, stacks: tuple[str, ...], harness_wheel: str | None, find_links: str | None, force: bool
) -> None:
    """Scaffold asv tracking in DIRECTORY (a git repository, default .): asv.conf.json,
    benchmarks/, sprout-asv.json and a README section."""
    from sprout_harness.asvtools.init import init

    got = init(directory, stacks=stacks, harness_wheel=harness_wheel, find_links=find_links, force=force)
    for f in got.files:
        click.echo(f"wrote {f.relative_to(got.directory)}")
    click.echo(f"stacks: {', '.join(got.stacks)}; sprout-harness {got.harness_version} pinned")
    if got.find_links is None:
        click.echo("note: sprout-harness is not on a package index: pass --harness-wheel or --find-links", err=True)
    click.echo(f"next: cd {got.directory} && asv machine --yes && asv run ALL && asv publish")


def _quiet_broken_pipe() -> None:
    """The reader of our output went away (`sprout list | head`): exit quietly, and keep
    Python from complaining again when it flushes stdout at exit."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(EXIT_OK)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="sprout")
    except BrokenPipeError:
        _quiet_broken_pipe()


if __name__ == "__main__":
    main()
