"""PostgreSQL server binaries for embedded mode: finding them, choosing a non-root user, running them."""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

__all__ = ["EmbeddedPostgresError", "PgBinaries", "RunAs", "find_binaries", "resolve_run_as", "run_pg"]

# Users we may run PostgreSQL as when obscura itself runs as root (initdb, pg_ctl and postgres
# all refuse to run as root). "pgserver" is the user the pgserver wheel creates for itself.
_RUN_AS_CANDIDATES = ("postgres", "pgserver", "nobody")


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL cannot be set up, started or stopped; the message says why and what to do."""


@dataclasses.dataclass(frozen=True, slots=True)
class PgBinaries:
    bin_dir: Path
    major: int
    source: str      # "pgserver wheel", "PATH" or the system folder

    def exe(self, name: str) -> str:
        return str(self.bin_dir / name)


@dataclasses.dataclass(frozen=True, slots=True)
class RunAs:
    """Who the PostgreSQL tools run as when obscura is root.

    ``namespace`` mode runs them in a new user namespace as an unprivileged id that maps back to
    root: PostgreSQL sees a non-root user, files stay root's, and no folder permission has to be
    widened (a data dir under /root or a 0700 temp dir works). Otherwise a real system user.
    """

    name: str
    uid: int
    gid: int
    home: str
    namespace: bool = False


# Inside the namespace these ids stand for root outside it.
_NS_ID = 1000
_NS_PREFIX = ("unshare", "--user", f"--map-user={_NS_ID}", f"--map-group={_NS_ID}")
_ns_works: bool | None = None


def _namespace_available() -> bool:
    """True if this root may create a user namespace (not every container allows it)."""
    global _ns_works
    if _ns_works is None:
        exe = shutil.which("unshare")
        try:
            _ns_works = exe is not None and subprocess.run(
                [exe, *_NS_PREFIX[1:], "true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, timeout=10, check=False).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _ns_works = False
    return _ns_works


def _candidate_dirs() -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    # find_spec does not import pgserver (its import has side effects: runtime-dir warnings).
    spec = importlib.util.find_spec("pgserver")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        found.append((Path(loc) / "pginstall" / "bin", "pgserver wheel"))
    initdb = shutil.which("initdb")
    if initdb:
        found.append((Path(initdb).resolve().parent, "PATH"))

    def version_key(path: str) -> float:
        m = re.search(r"/postgresql/(\d+(?:\.\d+)?)/bin$", path)
        return float(m.group(1)) if m else 0.0

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version_key, reverse=True):
        found.append((Path(d), d))
    return [(d, src) for d, src in found if all((d / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres"))]


def _major_version(bin_dir: Path) -> int:
    out = subprocess.run([str(bin_dir / "pg_ctl"), "--version"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    m = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    if not m:
        raise EmbeddedPostgresError(f"cannot read the PostgreSQL version of {bin_dir}: {out.strip()!r}")
    return int(m.group(1))


def find_binaries(pgdata: Path) -> PgBinaries:
    """The pgserver wheel's binaries, else initdb/pg_ctl on PATH, else /usr/lib/postgresql/*/bin;
    for an existing data folder, only binaries of the major version that created it."""
    need: int | None = None
    version_file = pgdata / "PG_VERSION"
    if version_file.is_file():
        need = int(version_file.read_text().strip().split(".")[0])
    seen: list[str] = []
    visited: set[Path] = set()
    for bin_dir, source in _candidate_dirs():
        if bin_dir in visited:
            continue
        visited.add(bin_dir)
        major = _major_version(bin_dir)
        seen.append(f"{major} ({source})")
        if need is None or major == need:
            return PgBinaries(bin_dir, major, source)
    if need is None:
        raise EmbeddedPostgresError(
            "no PostgreSQL server binaries found for embedded mode: install the 'pgserver' package "
            "(pip install pgserver) or PostgreSQL (initdb and pg_ctl), or set OBSCURA_DATABASE_URL")
    raise EmbeddedPostgresError(
        f"the embedded database in {pgdata} was created by PostgreSQL {need}, but only these server "
        f"versions were found: {', '.join(seen) or 'none'}; install PostgreSQL {need} or move the folder away")


def resolve_run_as(pgdata: Path, requested: str | None = None) -> RunAs | None:
    """None when we are not root; else the unprivileged user that owns (or will own) ``pgdata``."""
    if os.geteuid() != 0:
        return None
    entry: pwd.struct_passwd | None = None
    if requested:
        try:
            entry = pwd.getpwnam(requested)
        except KeyError:
            raise EmbeddedPostgresError(f"user {requested!r} for the embedded PostgreSQL does not exist") from None
    elif pgdata.exists() and pgdata.stat().st_uid != 0:
        entry = pwd.getpwuid(pgdata.stat().st_uid)
    elif _namespace_available():
        return RunAs("root (user namespace)", 0, 0, "/", namespace=True)
    else:
        for name in _RUN_AS_CANDIDATES:
            try:
                entry = pwd.getpwnam(name)
                break
            except KeyError:
                continue
    if entry is None or entry.pw_uid == 0:
        raise EmbeddedPostgresError(
            "obscura runs as root and PostgreSQL refuses to: create a 'postgres' system user, "
            "run obscura as an unprivileged user, or set OBSCURA_DATABASE_URL")
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def check_traversable(path: Path, run_as: RunAs) -> None:
    """Every folder above ``path`` must let ``run_as`` through; we do not widen permissions ourselves."""
    if run_as.namespace:
        return  # root outside the namespace: owner rights on root's folders
    gids = set(os.getgrouplist(run_as.name, run_as.gid))
    for folder in [*reversed(path.parents)]:
        st = folder.stat()
        if st.st_uid == run_as.uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in gids:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL runs as user {run_as.name!r}, which cannot enter {folder} "
                f"on the way to {path}: allow it (chmod o+x {folder}) or choose another OBSCURA_DATA_DIR")


def chown_to(path: Path, run_as: RunAs | None) -> None:
    if run_as is not None and not run_as.namespace:
        os.chown(path, run_as.uid, run_as.gid)


def run_pg(argv: list[str], run_as: RunAs | None, timeout_s: float, *,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool (as ``run_as`` when root), output captured; EmbeddedPostgresError on failure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    tool = Path(argv[0]).name
    kwargs: dict = {}
    if run_as is not None and run_as.namespace:
        argv = [*_NS_PREFIX, *argv]
        kwargs = {"umask": 0o077}
    elif run_as is not None:
        kwargs = {"user": run_as.uid, "group": run_as.gid, "extra_groups": [], "umask": 0o077}
        env.update(HOME=run_as.home, USER=run_as.name, LOGNAME=run_as.name)
    # Output goes to a file, not a pipe: `pg_ctl start` leaves a server behind that could
    # otherwise inherit the pipe and keep us waiting for EOF.
    with tempfile.TemporaryFile("w+") as out:
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  text=True, timeout=timeout_s, cwd="/", env=env, check=False, **kwargs)
        except subprocess.TimeoutExpired:
            raise EmbeddedPostgresError(f"{tool} timed out after {timeout_s:.0f}s") from None
        out.seek(0)
        output = out.read()
    if check and proc.returncode != 0:
        raise EmbeddedPostgresError(
            f"{tool} failed (exit {proc.returncode}): {output.strip()[-2000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, output, "")
