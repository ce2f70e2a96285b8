"""`pulse`: bring the stack and services up or down, show their status, run the demo, query.

Entry point of the console script; each command is a thin wrapper over the modules beside it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from servicekit import cdc_health
from servicekit.settings import load_settings

from pulse_cli import cdc_source, kafka_scan, processes
from pulse_cli.render import progress_bar, result_table
from pulse_cli.silences import SilenceApiError, SilenceClient, parse_duration_s, parse_matchers
from pulse_cli.stackenv import repo_root, stack_env

if TYPE_CHECKING:
    from query.engine import QueryEngine

app = typer.Typer(
    help="Pulse: real-time reviews and market data, end to end.", no_args_is_help=True
)
console = Console(width=None if sys.stdout.isatty() else 160)

CONSUMER_GROUPS = {
    "cdc_processor": "pulse-cdc-processor",
    "s3_archiver": "s3_archiver",
    "notifier": "notifier",
}


def _stack(root: Path, action: str) -> None:
    result = subprocess.run(  # noqa: S603  # the repo's own stack script
        [sys.executable, str(root / "deploy" / "local" / "stack.py"), action],
        cwd=root,
        check=False,
    )
    if result.returncode != 0:
        console.print(f"[red]stack.py {action} failed (exit {result.returncode})[/red]")
        raise typer.Exit(result.returncode)


# cdc_processor answers /healthz only once its tables are rebuilt from their changelogs; after
# long use that replay takes minutes, so the wait is generous (a dead process fails at once).
HEALTH_WAIT_S = 600.0


def bring_up(root: Path, *, wait_s: float = HEALTH_WAIT_S) -> dict[str, str]:
    """Start the stack, the services and the exchange simulator; wait for every /healthz."""
    console.print("[bold]Starting the local stack[/bold] (deploy/local/stack.py up)…")
    _stack(root, "up")
    env = stack_env(root)
    supervisor = processes.Supervisor(root, env)
    specs = processes.service_specs(root)
    console.print("Applying database migrations (python -m ingest migrate)…")
    if supervisor.run_once(specs[0], "migrate") != 0:
        console.print(f"[red]migrations failed: see {supervisor.log_file('ingest')}[/red]")
        raise typer.Exit(1)
    with progress_bar(console) as progress:
        task = progress.add_task("services healthy", total=len(specs))
        for spec in specs:
            # A port that answers while none of our processes runs belongs to someone else:
            # ours would fail to bind, and the other's /healthz would be taken for ours.
            if supervisor.pid(spec.name) is None and processes.health(spec.health_url)[0]:
                console.print(
                    f"[red]{spec.name}: {spec.health_url} already answers, but not from a "
                    "process `pulse up` started: stop whatever holds that port[/red]"
                )
                raise typer.Exit(1)
            supervisor.start(spec)
        healthy: set[str] = set()
        deadline = time.monotonic() + wait_s
        while len(healthy) < len(specs) and time.monotonic() < deadline:
            for spec in specs:
                if spec.name in healthy:
                    continue
                if supervisor.pid(spec.name) is None:
                    console.print(
                        f"[red]{spec.name} exited: see {supervisor.log_file(spec.name)}[/red]"
                    )
                    raise typer.Exit(1)
                if processes.health(spec.health_url)[0]:
                    healthy.add(spec.name)
                    progress.advance(task)
            time.sleep(0.5)
    # A service that answered and then died (a failed bind behind someone else's answer).
    healthy = {name for name in healthy if supervisor.pid(name) is not None}
    missing = [s.name for s in specs if s.name not in healthy]
    if missing:
        logs = ", ".join(str(supervisor.log_file(name)) for name in missing)
        console.print(
            f"[red]not healthy after {wait_s:.0f} s: {', '.join(missing)} (see {logs})[/red]"
        )
        raise typer.Exit(1)
    console.print("[green]All services healthy.[/green] Logs: .stack/logs/<service>.log")
    return env


@app.command()
def up(
    wait_s: Annotated[float, typer.Option(help="How long to wait for health")] = HEALTH_WAIT_S,
) -> None:
    """Start the stack, the services and the exchange simulator (logs in .stack/logs)."""
    bring_up(repo_root(), wait_s=wait_s)


@app.command()
def down(
    services_only: Annotated[bool, typer.Option(help="Leave the stack running")] = False,
) -> None:
    """Stop the services, then the stack."""
    root = repo_root()
    supervisor = processes.Supervisor(root, stack_env(root))
    for spec in reversed(processes.service_specs(root)):
        stopped = supervisor.stop(spec.name)
        console.print(f"{spec.name}: {'stopped' if stopped else 'not running'}")
    if not services_only:
        _stack(root, "down")


@app.command()
def status() -> None:
    """Each service with its pid, health and consumer lag; then the stack's own status."""
    root = repo_root()
    env = stack_env(root)
    supervisor = processes.Supervisor(root, env)
    table = Table(title="Pulse services", title_justify="left", header_style="bold cyan")
    for column in ("service", "pid", "health", "consumer lag (records)", "log"):
        table.add_column(column)
    bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092")
    for spec in processes.service_specs(root):
        pid = supervisor.pid(spec.name)
        ok, detail = processes.health(spec.health_url)
        lag = "—"
        if spec.name in CONSUMER_GROUPS:
            value = asyncio.run(kafka_scan.group_lag(bootstrap, CONSUMER_GROUPS[spec.name]))
            lag = "unknown" if value is None else str(value)
        table.add_row(
            spec.name,
            str(pid) if pid else "[dim]not running[/dim]",
            f"[green]ok[/green] ({detail})" if ok else f"[red]down[/red] ({detail})",
            lag,
            str(supervisor.log_file(spec.name).relative_to(root)),
        )
    console.print(table)
    _print_cdc_source(env)
    subprocess.run(  # noqa: S603  # the repo's own stack script
        [sys.executable, str(root / "deploy" / "local" / "stack.py"), "status"],
        cwd=root,
        check=False,
    )


def _print_cdc_source(env: dict[str, str]) -> None:
    """The CDC line: red when the replication slot is idle, missing or lags past the threshold
    (PULSE_CDC_SLOT_LAG_MAX_BYTES), or no change event came for PULSE_CDC_CHANGE_AGE_MAX_S."""
    settings = load_settings(cdc_health.CdcHealthSettings)
    report = asyncio.run(cdc_source.check(env, settings))
    slot = report.slot
    lag = "unknown" if slot is None or slot.lag_bytes is None else f"{slot.lag_bytes:,} B"
    age = "none" if report.last_change_age_s is None else f"{report.last_change_age_s:.1f} s"
    table = Table(title="CDC (source side)", title_justify="left", header_style="bold cyan")
    for column in ("slot", "reader", "slot lag", "last change event", "health"):
        table.add_column(column)
    table.add_row(
        settings.slot_name,
        "—" if slot is None or not slot.exists else ("active" if slot.active else "none"),
        lag,
        age,
        "[green]ok[/green]" if report.healthy else f"[red]{'; '.join(report.problems)}[/red]",
    )
    console.print(table)


@app.command()
def query(
    sql: Annotated[
        str,
        typer.Argument(
            help="One SELECT over reviews_enriched, reviews_latest, market_candles, alerts"
        ),
    ],
    max_rows: Annotated[int, typer.Option(help="Row limit")] = 200,
) -> None:
    """Run read-only SQL over the archive (the same guard as the HTTP endpoint)."""
    from query.engine import QueryFailedError, QueryTimeoutError
    from query.guard import QueryRejectedError

    engine = _engine()
    try:
        result = engine.run(sql, max_rows=max_rows)
    except (QueryRejectedError, QueryFailedError, QueryTimeoutError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print(result_table(f"{len(result.rows)} rows", result.columns, result.rows))
    if result.truncated:
        console.print(f"[yellow]truncated at {max_rows} rows[/yellow]")


@app.command()
def insights(
    equity: Annotated[str | None, typer.Option(help="Equity for the correlation")] = None,
) -> None:
    """The analysts' questions over the archive."""
    from query import insights as catalogue

    engine = _engine()
    for insight in catalogue.all_insights(equity=equity):
        result = engine.run(insight.sql, max_rows=50)
        console.print(result_table(insight.title, result.columns, result.rows))


@app.command()
def demo(
    scale: Annotated[float, typer.Option(help="Multiply the input sizes")] = 1.0,
    timeout_s: Annotated[
        float, typer.Option(help="Wait at most this long for the archive")
    ] = 240.0,
    skip_up: Annotated[bool, typer.Option(help="Assume everything runs already")] = False,
) -> None:
    """Run the whole pipeline on generated data and check that nothing was lost."""
    from pulse_cli import demo as flow

    root = repo_root()
    env = stack_env(root) if skip_up else bring_up(root)
    report = flow.run_demo(root, env, console=console, scale=scale, timeout_s=timeout_s)
    raise typer.Exit(0 if report.passed else 1)


silence_app = typer.Typer(help="Silence alerts in the notifier (time-bounded).")
app.add_typer(silence_app, name="silence")


def _silence_client() -> SilenceClient:
    env = stack_env(repo_root())
    return SilenceClient(
        api_url=env.get("PULSE_API_URL", "http://127.0.0.1:58000"),
        api_key=env.get("PULSE_API_KEY", ""),
    )


def _silence_row(table: Table, silence: dict[str, Any]) -> None:
    matchers = ", ".join(
        f"{m['name']}{'=~' if m['regex'] else '='}{m['value']}" for m in silence["matchers"]
    )
    table.add_row(silence["id"], silence["state"], matchers, silence["ends_at"], silence["comment"])


def _silence_table(silences: list[dict[str, Any]]) -> Table:
    table = Table(header_style="bold cyan")
    for column in ("id", "state", "matchers", "ends at", "comment"):
        table.add_column(column)
    for silence in silences:
        _silence_row(table, silence)
    return table


@silence_app.command("add")
def silence_add(
    matchers: Annotated[
        list[str], typer.Argument(help="name=value or name=~regex, e.g. subject=product:7")
    ],
    duration: Annotated[str, typer.Option("--for", help="How long: 90s, 30m, 2h, 1d")] = "1h",
    comment: Annotated[str, typer.Option(help="Why")] = "",
    created_by: Annotated[str, typer.Option(help="Who")] = "pulse-cli",
) -> None:
    """Create a silence: matching alerts are not sent until it ends."""
    try:
        parsed = parse_matchers(matchers)
        seconds = parse_duration_s(duration)
        silence = _silence_client().add(
            parsed, duration_s=seconds, created_by=created_by, comment=comment
        )
    except (ValueError, SilenceApiError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print(_silence_table([silence]))


@silence_app.command("list")
def silence_list(
    state: Annotated[str | None, typer.Option(help="active, pending or expired")] = None,
) -> None:
    """The silences the notifier holds."""
    try:
        silences = _silence_client().list(state=state)
    except SilenceApiError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print(_silence_table(silences))


@silence_app.command("expire")
def silence_expire(silence_id: Annotated[str, typer.Argument(help="The silence's id")]) -> None:
    """End a silence now."""
    try:
        silence = _silence_client().expire(silence_id)
    except SilenceApiError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print(_silence_table([silence]))


def _quality(command: str) -> int:
    """`python -m quality <command>` with the stack's endpoints (its own output, its exit code)."""
    root = repo_root()
    env = {**os.environ, **stack_env(root)}
    env.setdefault("QUALITY_LOG_JSON", "false")
    result = subprocess.run(  # noqa: S603  # the workspace's own module
        [sys.executable, "-m", "quality", command], cwd=root, env=env, check=False
    )
    return result.returncode


@app.command()
def check() -> None:
    """Run the data-quality checks over the archive: one line per check; exit 1 if any failed
    (the line names the dataset and the check), 2 if a checks file is wrong."""
    raise typer.Exit(_quality("check"))


@app.command()
def report() -> None:
    """Render the daily digests (customer team, market desk), archive and publish them."""
    raise typer.Exit(_quality("report"))


def _engine() -> QueryEngine:
    from pulse_cli.demo import make_engine

    return make_engine(stack_env(repo_root()))


if __name__ == "__main__":
    app()
