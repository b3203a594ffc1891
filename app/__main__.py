"""Command line: ``python -m app run | web | worker | agents | exchange | migrate | keys ...``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace

from app.logs import configure_logging
from app.settings import PROJECT_ROOT, Settings

log = logging.getLogger("cryptofunk")
GUNICORN_CONFIG = PROJECT_ROOT / "config" / "gunicorn.conf.py"


def _prepare(settings: Settings):
    """Resolve the database, apply migrations, return (settings with URL, embedded handle)."""
    from app.access.startup import prepare_access
    from app.database_url import resolve_database
    from app.db import db, init_database
    from app.migrations import migrate

    url, embedded = resolve_database(settings)
    init_database(url, pool_size=2)
    applied = migrate()
    if applied:
        log.info("migrations applied: %s", ", ".join(applied))
    prepare_access(settings)
    db.close_all()
    return replace(settings, database_url=url), embedded


def first_admin_key_notice(settings: Settings) -> str | None:
    """On a database without keys, issue an admin key and say once how to use it."""
    from app.access.keys import FIRST_ADMIN_NAME, issue_first_admin_key
    from app.db import db, init_database

    if settings.auth_disabled or settings.admin_key:
        return None
    init_database(settings.database_url, pool_size=1)
    try:
        raw = issue_first_admin_key()
    finally:
        db.close_all()
    if raw is None:
        return None
    base = f"http://{settings.api_host}:{settings.api_port}"
    return (
        f"Authentication is on. This is the first start, so an admin key named "
        f"{FIRST_ADMIN_NAME!r} was created.\n"
        f"It is shown only now (only its hash is stored); keep it somewhere safe:\n\n"
        f"  {raw}\n\n"
        f"Use it as:  curl -H 'X-API-Key: {raw}' {base}/api/v1/status\n"
        f"More keys:  python -m app keys create --name NAME --role viewer|trader|admin"
    )


def cmd_migrate(settings: Settings) -> int:
    """Apply pending database migrations (the Procfile's release step)."""
    _, embedded = _prepare(settings)
    print("database is up to date")
    if embedded:
        embedded.stop()
    return 0


def _gunicorn_command() -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG), "wsgi:app"]


def cmd_web(settings: Settings) -> int:
    """The web process: gunicorn with gevent workers (REST and WebSocket)."""
    settings, embedded = _prepare(settings)
    try:
        return subprocess.call(_gunicorn_command(), cwd=PROJECT_ROOT)
    except KeyboardInterrupt:
        return 0
    finally:
        if embedded:
            embedded.stop()


def _run_process(settings: Settings, build) -> int:
    """Prepare the database, then run ``build(settings).run_forever()`` until it stops."""
    settings, embedded = _prepare(settings)
    try:
        build(settings).run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if embedded:
            embedded.stop()
    return 0


def cmd_worker(settings: Settings) -> int:
    """The trading engine: market feed, matching, positions and PnL."""
    from app.engine import Engine

    return _run_process(settings, Engine)


def cmd_agents(settings: Settings) -> int:
    """The trading agents: indicators, model approvals, decisions."""
    from app.agents.runner import AgentsProcess

    return _run_process(settings, AgentsProcess)


def cmd_exchange(settings: Settings) -> int:
    """The exchange process: market data from a real exchange, and LIVE orders, through ccxt."""
    from app.exchange.process import ExchangeProcess

    return _run_process(settings, ExchangeProcess)


def cmd_run(settings: Settings) -> int:
    """Everything on one machine: database, migrations, engine, agents and web server.

    A crashed engine, agents or web process is restarted with backoff; the rest stay up.
    """
    from app.supervisor import Supervisor

    settings, embedded = _prepare(settings)
    notice = first_admin_key_notice(settings)
    env = {**os.environ, "DATABASE_URL": settings.database_url}
    supervisor = Supervisor(settings.database_url, env, PROJECT_ROOT)
    supervisor.add("engine", [sys.executable, "-m", "app", "worker"])
    supervisor.add("agents", [sys.executable, "-m", "app", "agents"])
    if settings.runs_exchange_process:
        supervisor.add("exchange", [sys.executable, "-m", "app", "exchange"])
    supervisor.add("web", _gunicorn_command())
    supervisor.start_all()
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    base = f"http://{settings.api_host}:{settings.api_port}"
    announced = False
    try:
        while not stopping:
            supervisor.poll()
            if not announced and _answers(f"{base}/health"):
                announced = True
                database = embedded.describe() if embedded else "PostgreSQL at DATABASE_URL"
                print(welcome(base, settings.market_feed, database), flush=True)
                if notice:
                    print(notice, flush=True)
            time.sleep(0.2)
    finally:
        supervisor.stop_all()
        if embedded:
            embedded.stop()
    print("CryptoFunk stopped", flush=True)
    return 0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def welcome(base: str, feed: str, database: str) -> str:
    """What a newcomer needs once the service is up."""
    websocket = "ws" + base.removeprefix("http")
    return (
        f"CryptoFunk is up (feed: {feed}; Ctrl-C stops everything)\n"
        f"  Dashboard  {base}/dashboard\n"
        f"  API        {base}/api/v1\n"
        f"  Docs       {base}/api/docs\n"
        f"  WebSocket  {websocket}/api/v1/ws\n"
        f"  Database   {database}"
    )


def cmd_replay_sample(settings: Settings) -> int:
    """Regenerate the OHLCV sample the replay feed ships with."""
    from app.trading.feeds import write_sample

    for path in write_sample():
        print(f"wrote {path}")
    return 0


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    """Create, list or revoke API keys in the configured database."""
    from app.access import cli

    settings, embedded = _prepare(settings)
    from app.db import db, init_database

    init_database(settings.database_url, pool_size=1)
    try:
        return cli.run(args, settings.admin_key)
    finally:
        db.close_all()
        if embedded:
            embedded.stop()


COMMANDS = {
    "run": cmd_run,
    "web": cmd_web,
    "worker": cmd_worker,
    "agents": cmd_agents,
    "exchange": cmd_exchange,
    "migrate": cmd_migrate,
    "replay-sample": cmd_replay_sample,
}


def main(argv: list[str] | None = None) -> int:
    from app.access import cli

    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        commands.add_parser(name, help=(command.__doc__ or "").strip().splitlines()[0])
    cli.add_arguments(commands.add_parser("keys", help="create, list or revoke API keys"))
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format, args.command)
    if args.command == "keys":
        return cmd_keys(settings, args)
    return COMMANDS[args.command](settings)


if __name__ == "__main__":
    sys.exit(main())
