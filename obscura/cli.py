"""Command line: `obscura serve | migrate | print-config | version`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from obscura import __version__
from obscura.config import ConfigError, Settings, add_cli_flags, load_settings, redacted_items
from obscura.logs import configure_logging

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obscura", description="Obscura: a zero-knowledge Signal-protocol relay.")
    parser.add_argument("--version", action="version", version=f"obscura {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (
        ("serve", "run a node (embedded PostgreSQL and in-process coordination unless configured)"),
        ("migrate", "apply database migrations and exit"),
        ("print-config", "show the effective settings, secrets redacted"),
    ):
        add_cli_flags(sub.add_parser(name, help=text, description=text))
    sub.add_parser("version", help="print the version")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    cli = {k: v for k, v in vars(args).items() if k != "command"}
    return load_settings(cli=cli)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command in (None, "version"):
        if args.command is None:
            parser.print_help()
            return 2
        print(__version__)
        return 0
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"obscura: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "print-config":
        width = max(len(env) for env, _ in redacted_items(settings))
        for env, shown in redacted_items(settings):
            print(f"{env.ljust(width)}  {shown}")
        return 0
    configure_logging(settings.telemetry_log_format, settings.telemetry_log_level)
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if settings.server_workers > 1:
        from obscura.supervisor import run_workers

        try:
            return run_workers(settings)
        except ConfigError as exc:
            print(f"obscura: configuration error: {exc}", file=sys.stderr)
            return 2
    from obscura.app import run

    return run(settings)


async def _migrate(settings: Settings) -> int:
    import logging

    from obscura.store.postgres.pool import Database
    from obscura.store.embedded import EmbeddedPostgres
    from obscura.store.migrate import run_migrations

    log = logging.getLogger("obscura.migrate")
    embedded = None
    dsn = settings.db_url
    if dsn is None:
        embedded = EmbeddedPostgres(settings.data_dir)
        dsn = await embedded.start()
    try:
        db = await Database.connect(dsn, settings)
        try:
            applied = await run_migrations(db.pool, logger=log)
        finally:
            await db.close()
    finally:
        if embedded is not None:
            await embedded.stop()
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
