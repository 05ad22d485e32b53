"""``pilothouse backup`` and ``pilothouse restore``: k3s' etcd-snapshot for both stores.

``backup`` works on a running or a stopped server: SQLite through its online backup API, etcd through
its Maintenance.Snapshot call (:mod:`pilothouse.store.snapshot`, ``EtcdStore.snapshot``), both
consistent while the server writes. The archive's layout is :mod:`pilothouse.cli.backupfile`.

``restore`` fills an empty data dir (``--force`` to overwrite one): the PKI and the data dir's format
back in place, and the store

* SQLite: the file, its revision moved ``--bump-revision`` ahead with everything below compacted, so a
  client's watch from a resourceVersion it saw before the restore gets 410 Gone instead of silently
  missing events (every object keeps its own resourceVersion);
* etcd: with ``--etcd-data-dir``, ``etcdutl snapshot restore --bump-revision N --mark-compacted`` (etcd
  3.5's etcdutl has both) or, when only etcd 3.4's ``etcdctl`` is installed, ``etcdctl snapshot
  restore``, which cannot move the revision: the restore then says that clients must re-list. Extra
  arguments after ``--`` go to that command (``--name``, ``--initial-cluster``, ...). Without
  ``--etcd-data-dir`` the snapshot is left in the data dir for the operator's own etcd tooling.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from importlib.metadata import version as release_version
from pathlib import Path

import click

from pilothouse.apiserver.datadir import FORMAT_VERSION, VERSION_FILE, read_version
from pilothouse.cli.backupfile import Manifest, file_sha256, now, read_manifest, unpack, write_archive
from pilothouse.store import etcd_endpoint_from_servers, sqlite_path
from pilothouse.store.snapshot import DEFAULT_BUMP_REVISION, sqlite_restore, sqlite_snapshot

__all__ = ["COMMANDS", "backup", "restore"]

#: What a restore writes into the data dir (and ``--force`` clears first): the server's own files.
RESTORED = ("pki", VERSION_FILE, "kubeconfig.yaml")


def _default_data_dir() -> Path:
    from pilothouse.cli.main import default_data_dir  # main registers these commands: import it late

    return default_data_dir()


def _endpoint(data_dir: Path, datastore_endpoint: str, etcd_servers: str) -> str:
    if etcd_servers and datastore_endpoint:
        raise click.BadParameter("give --datastore-endpoint or --etcd-servers, not both")
    if etcd_servers:
        return etcd_endpoint_from_servers(etcd_servers)
    return datastore_endpoint or f"sqlite://{data_dir / 'state.db'}"


async def _etcd_snapshot(endpoint: str, destination: Path, ca_file: str | None, cert_file: str | None,
                         key_file: str | None) -> int:
    from pilothouse.store.etcd import EtcdStore

    async with EtcdStore(endpoint, compact_interval=None, request_timeout=30.0, ca_file=ca_file,
                         cert_file=cert_file, key_file=key_file) as store:
        return await store.snapshot(str(destination))


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=_default_data_dir,
              show_default="user state dir", help="The server's data dir (its PKI and, by default, its store).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="The archive to write (default: <data-dir>/backups/backup-<UTC time>.tar.gz).")
@click.option("--datastore-endpoint", default="", help="The server's store, when not <data-dir>/state.db.")
@click.option("--etcd-servers", default="", help="The server's etcd: http://10.1.0.1:2379,...")
@click.option("--etcd-cafile", default=None, help="CA bundle for TLS to etcd.")
@click.option("--etcd-certfile", default=None, help="Client certificate for TLS to etcd.")
@click.option("--etcd-keyfile", default=None, help="Client key for TLS to etcd.")
@click.option("--encryption-provider-config", default="",
              help="The server's encryption configuration: recorded (path and sha256) for the restore.")
def backup(data_dir: Path, output: Path | None, datastore_endpoint: str, etcd_servers: str, etcd_cafile: str | None,
           etcd_certfile: str | None, etcd_keyfile: str | None, encryption_provider_config: str) -> None:
    """Write a consistent backup of a running or stopped server into one archive."""
    started = time.monotonic()
    endpoint = _endpoint(data_dir, datastore_endpoint, etcd_servers)
    store = "sqlite" if endpoint.startswith("sqlite:") else "etcd"
    if output is None:
        output = data_dir / "backups" / f"backup-{now().replace(':', '').replace('-', '')}.tar.gz"
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".backup-") as scratch:
        snapshot = Path(scratch) / "store"
        try:
            if store == "sqlite":
                revision = sqlite_snapshot(sqlite_path(endpoint), str(snapshot))
            else:
                revision = asyncio.run(_etcd_snapshot(endpoint, snapshot, etcd_cafile, etcd_certfile, etcd_keyfile))
        except Exception as error:  # sqlite3, OS and store errors alike: one line, not a traceback
            raise click.ClickException(f"cannot snapshot the store {endpoint}: {error}") from None
        reference = None
        if encryption_provider_config:
            reference = {"path": os.path.abspath(encryption_provider_config),
                         "sha256": file_sha256(encryption_provider_config)}
        try:
            data_dir_format = read_version(data_dir)  # 0: unversioned; the restored server migrates it
        except OSError as error:
            raise click.ClickException(str(error)) from None
        manifest = Manifest(store=store, revision=revision, data_dir_format=data_dir_format, created=now(),
                            release=release_version("pilothouse"), encryption_provider_config=reference)
        write_archive(output, manifest, snapshot, data_dir)
    click.echo(f"backup of {store} revision {revision} written to {output} "
               f"({output.stat().st_size} bytes, {time.monotonic() - started:.1f}s)")


def _check_empty(data_dir: Path, store_file: str | None, force: bool) -> None:
    """Refuse (or, with ``force``, clear) what the restore would overwrite: the PKI, the version file,
    the kubeconfig and the SQLite store wherever it goes."""
    paths = [data_dir / name for name in RESTORED]
    if store_file is not None:
        paths += [Path(store_file + suffix) for suffix in ("", "-wal", "-shm")]
    present = [path for path in paths if path.exists()]
    if not present:
        return
    if not force:
        raise click.ClickException(f"data dir {data_dir} is not empty (it holds {', '.join(map(str, present))}): "
                                   "restore into a new data dir, or give --force to replace its store and PKI")
    for path in present:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _check_encryption(manifest: Manifest) -> None:
    reference = manifest.encryption_provider_config
    if not reference:
        return
    path = reference["path"]
    if not os.path.exists(path):
        click.echo(f"warning: the backup's Secrets were encrypted with {path} (sha256 {reference['sha256']}), "
                   "which is not here: start the server with --encryption-provider-config naming that "
                   "configuration, or it cannot read them", err=True)
    elif file_sha256(path) != reference["sha256"]:
        click.echo(f"warning: {path} changed since the backup: make sure it still holds the keys the backup's "
                   "Secrets were encrypted with", err=True)


def _restore_etcd(snapshot: Path, etcd_data_dir: Path, bump: int, extra: tuple[str, ...]) -> str:
    """Run etcd's own restore into ``etcd_data_dir``; a note for the operator on what it could not do."""
    etcdutl = shutil.which("etcdutl")
    if etcdutl is not None:
        help_text = subprocess.run([etcdutl, "snapshot", "restore", "--help"], capture_output=True, text=True).stdout
        if "--bump-revision" in help_text:
            command = [etcdutl, "snapshot", "restore", str(snapshot), "--data-dir", str(etcd_data_dir),
                       "--bump-revision", str(bump), "--mark-compacted", *extra]
            _run_tool(command, {})
            return ""
    etcdctl = shutil.which("etcdctl")
    if etcdctl is None:
        raise click.ClickException("restoring an etcd snapshot needs etcdutl or etcdctl (Debian: etcd-client)")
    _run_tool([etcdctl, "snapshot", "restore", str(snapshot), "--data-dir", str(etcd_data_dir), *extra],
              {"ETCDCTL_API": "3"})
    return ("note: this etcd's restore cannot move its revision forward (etcdutl --bump-revision, etcd 3.5+): "
            "revisions restart at the backup's, so restart every client (controllers, agents, kubectl "
            "watches) to make it re-list")


def _run_tool(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
    if result.returncode != 0:
        raise click.ClickException(f"{' '.join(command[:3])} failed: {result.stderr.strip() or result.stdout}")


def _restore_store(store: str, snapshot: Path, target: str, data_dir: Path, etcd_data_dir: Path | None,
                   bump: int, etcd_args: tuple[str, ...]) -> tuple[str, str]:
    """Put the snapshot in place; (where it went, a note for the operator)."""
    if store == "sqlite":
        return f"store {target} at revision {sqlite_restore(str(snapshot), target, bump)}", ""
    if etcd_data_dir is not None:
        return f"etcd data dir {etcd_data_dir}", _restore_etcd(snapshot, etcd_data_dir, bump, etcd_args)
    shutil.move(snapshot, data_dir / snapshot.name)
    return f"etcd snapshot {data_dir / snapshot.name} (restore it with etcdutl snapshot restore)", ""


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data-dir", type=click.Path(path_type=Path), default=_default_data_dir,
              show_default="user state dir", help="The data dir to restore into (empty unless --force).")
@click.option("--force", is_flag=True,
              help="Replace the store and the PKI of a data dir that has them (stop its server first).")
@click.option("--bump-revision", type=int, default=DEFAULT_BUMP_REVISION, show_default=True,
              help="How far the restored store's revision jumps past the backup's (etcdutl's flag).")
@click.option("--datastore-endpoint", default="", help="Where the SQLite store goes, when not <data-dir>/state.db.")
@click.option("--etcd-data-dir", type=click.Path(path_type=Path), default=None,
              help="Restore an etcd snapshot into this new etcd data dir (with etcdutl, else etcdctl).")
@click.argument("etcd_args", nargs=-1, type=click.UNPROCESSED)
def restore(archive: Path, data_dir: Path, force: bool, bump_revision: int, datastore_endpoint: str,
            etcd_data_dir: Path | None, etcd_args: tuple[str, ...]) -> None:
    """Restore ARCHIVE (from ``pilothouse backup``) into a data dir; arguments after -- go to etcd's restore."""
    started = time.monotonic()
    try:
        manifest = read_manifest(archive)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if manifest.data_dir_format > FORMAT_VERSION:
        raise click.ClickException(f"{archive} holds a data dir of format {manifest.data_dir_format}, newer than "
                                   f"this pilothouse understands ({FORMAT_VERSION}): restore it with "
                                   f"{manifest.release or 'a newer release'}")
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        target = sqlite_path(datastore_endpoint) if datastore_endpoint else str(data_dir / "state.db")
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--datastore-endpoint") from None
    _check_empty(data_dir, target if manifest.store == "sqlite" else None, force)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".restore-") as scratch:
        snapshot = unpack(archive, manifest, Path(scratch))
        where, note = _restore_store(manifest.store, snapshot, target, data_dir, etcd_data_dir, bump_revision,
                                     etcd_args)
        for name in ("pki", VERSION_FILE):
            if (Path(scratch) / name).exists():
                shutil.move(Path(scratch) / name, data_dir / name)
    _check_encryption(manifest)
    click.echo(f"restored {archive} (revision {manifest.revision}, {manifest.created}) into {data_dir}: {where} "
               f"({time.monotonic() - started:.1f}s)")
    if note:
        click.echo(note, err=True)


COMMANDS = (backup, restore)
