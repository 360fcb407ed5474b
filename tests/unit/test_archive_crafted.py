"""Crafted snapshot archives (security review, "Hardening" 2): only regular files (and
directory entries, skipped) are accepted, and no member is read past the bytes the archive
really holds, so a small archive cannot expand into memory or disk before it is refused.
Each archive is built here, from a real one (tests/unit/test_snapshot_archive.py)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from shardvec.contract.archive import MANIFEST, MANIFEST_SUM, open_archive, read_manifest
from shardvec.contract.errors import DataLoss
from tests.unit.test_snapshot_archive import _archive

STORE0 = "shard-0000/store.sqlite"


def _contents(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        out = {}
        for m in tar.getmembers():
            f = tar.extractfile(m)
            assert f is not None
            out[m.name] = f.read()
        return out


def _write(
    path: Path,
    files: dict[str, bytes],
    replace: dict[str, tarfile.TarInfo] | None = None,
    manifest: dict[str, Any] | None = None,
    fmt: int = tarfile.PAX_FORMAT,
) -> Path:
    """A tar of `files` in order; a name in `replace` is written as that TarInfo, no data."""
    files = dict(files)
    if manifest is not None:
        text = json.dumps(manifest).encode()
        files[MANIFEST] = text
        files[MANIFEST_SUM] = hashlib.sha256(text).hexdigest().encode()
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data in files.items():
            if replace and name in replace:
                tar.addfile(replace[name])
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _sparse(name: str, size: int) -> tarfile.TarInfo:
    """A GNU sparse (PAX 0.1) member: no data in the archive, `size` zero bytes when read."""
    info = tarfile.TarInfo(name)
    info.size = 0
    info.pax_headers = {"GNU.sparse.map": "0,0", "GNU.sparse.size": str(size)}
    return info


@pytest.fixture()
def real(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    path, engines = _archive(tmp_path)
    for e in engines:
        e.close()
    return path, _contents(path)


def _refused(path: Path, tmp_path: Path, match: str) -> Path:
    work = tmp_path / "work"
    with pytest.raises(DataLoss, match=match):
        open_archive(path, work)
    return work


def test_a_sparse_checksum_member_is_refused_before_it_is_read(
    real: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    # An 86 KB archive like this one with size 4 GiB grew a verifier by 4 GiB; 48 MiB here.
    _, files = real
    path = _write(tmp_path / "x.tar", files, {MANIFEST_SUM: _sparse(MANIFEST_SUM, 48 << 20)})
    assert path.stat().st_size < 200_000
    _refused(path, tmp_path, r"'manifest\.json\.sha256' \(sparse file")
    with pytest.raises(DataLoss, match="sparse"):
        read_manifest(path)


def test_a_sparse_store_member_writes_nothing_before_refusal(
    real: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    # The manifest lists a 32 MiB store; the archive holds none of it (a 45 KB archive with
    # 1 GiB wrote 1 GiB under the data dir before its checksum failed).
    _, files = real
    manifest = json.loads(files[MANIFEST])
    entry = next(f for f in manifest["shards"][0]["files"] if f["path"] == STORE0)
    entry["size"] = 32 << 20
    path = _write(tmp_path / "x.tar", files, {STORE0: _sparse(STORE0, 32 << 20)}, manifest)
    work = _refused(path, tmp_path, r"'shard-0000/store\.sqlite' \(sparse file")
    written = sum(f.stat().st_size for f in work.rglob("*") if f.is_file())
    assert written == 0


def test_a_member_claiming_more_than_the_archive_holds_is_refused(
    real: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    _, files = real
    info = tarfile.TarInfo(MANIFEST_SUM)
    info.size = 0
    info.pax_headers = {"size": str(4 << 30)}  # the PAX size overrides the header's
    last = {k: v for k, v in files.items() if k != MANIFEST_SUM} | {MANIFEST_SUM: b""}
    path = _write(tmp_path / "x.tar", last, {MANIFEST_SUM: info})  # last: tarfile lists it
    # tarfile notices the end of data itself when it lists the members; the archive's own
    # bound (offset + size within the file) stands behind it for every member.
    _refused(path, tmp_path, r"the archive is damaged|'manifest\.json\.sha256' claims 4294967296")


def test_an_old_gnu_sparse_member_is_refused(
    real: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    """typeflag 'S' with a real size of 64 MiB in its header and no data."""
    _, files = real
    _write(tmp_path / "gnu.tar", {MANIFEST_SUM: b""}, fmt=tarfile.GNU_FORMAT)
    block = bytearray((tmp_path / "gnu.tar").read_bytes()[:512])
    block[156:157] = tarfile.GNUTYPE_SPARSE
    block[483:495] = b"%011o\0" % (64 << 20)
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    path = tmp_path / "x.tar"
    with open(path, "wb") as out:
        _write(tmp_path / "rest.tar", {k: v for k, v in files.items() if k != MANIFEST_SUM})
        rest = (tmp_path / "rest.tar").read_bytes()
        out.write(bytes(block) + rest)
    _refused(path, tmp_path, r"'manifest\.json\.sha256' \(sparse file")


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        (tarfile.SYMTYPE, "symbolic link"),
        (tarfile.LNKTYPE, "hard link"),
        (tarfile.CHRTYPE, "character device"),
        (tarfile.BLKTYPE, "block device"),
        (tarfile.FIFOTYPE, "FIFO"),
        (tarfile.CONTTYPE, "contiguous file"),
    ],
)
def test_links_devices_and_fifos_are_refused(
    real: tuple[Path, dict[str, bytes]], tmp_path: Path, kind: bytes, words: str
) -> None:
    _, files = real
    info = tarfile.TarInfo(STORE0)
    info.type = kind
    info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    if kind == tarfile.CONTTYPE:
        info.size = len(files[STORE0])
        replace = None
        path = tmp_path / "x.tar"
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in files.items():
                t = info if name == STORE0 else tarfile.TarInfo(name)
                t.size = len(data)
                tar.addfile(t, io.BytesIO(data))
    else:
        replace = {STORE0: info}
        path = _write(tmp_path / "x.tar", files, replace)
    _refused(path, tmp_path, rf"'shard-0000/store\.sqlite' \({words}, not a plain file")


def test_directory_entries_are_skipped(real: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    _, files = real
    path = tmp_path / "x.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("shard-0000")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert open_archive(path, tmp_path / "work").rows == 67 + 77
