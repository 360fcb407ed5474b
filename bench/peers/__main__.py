"""`python -m peers`: measure the peers named by --only and write their JSON (see the package
docstring; `shardvec bench query --peers` runs this in the peers' interpreter)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from . import __doc__ as PACKAGE_DOC
from .chroma import Chroma, ChromaServer
from .common import Peer, installed_version, load_meta, redact
from .embedded import MilvusLite, QdrantLocal
from .measure import measure
from .pgvector import PgVector

PEERS: dict[str, type[Peer]] = {
    "chroma": Chroma,
    "chroma_server": ChromaServer,
    "milvus": MilvusLite,
    "qdrant": QdrantLocal,
    "pgvector": PgVector,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=PACKAGE_DOC.splitlines()[0])
    p.add_argument("--base", type=Path, required=True, help="normalised float32 .npy")
    p.add_argument("--queries", type=Path, required=True, help="normalised float32 .npy")
    p.add_argument("--gt", type=Path, required=True, help="exact top-k row ids .npy")
    p.add_argument("--out", type=Path, required=True, help="JSON written here")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--clients", default="32", help="concurrent clients of the server peers")
    p.add_argument("--meta", type=Path, default=None,
                   help="JSONL, line i = base row i's metadata (year, popular): filtered queries")
    p.add_argument("--pg-dsn", default=os.environ.get("SHARDVEC_PG_DSN"),
                   help="PostgreSQL with pgvector (default $SHARDVEC_PG_DSN)")
    default_only = [key for key in PEERS if key != "pgvector"]
    p.add_argument("--only", default=None,
                   help="comma-separated: " + ",".join(PEERS) + " (default: all but pgvector, "
                   "and pgvector too when a DSN is given)")
    args = p.parse_args(argv)
    if args.only is None:
        args.only = ",".join(default_only + (["pgvector"] if args.pg_dsn else []))
    base, queries, gt = np.load(args.base), np.load(args.queries), np.load(args.gt)
    args.meta_rows = load_meta(args.meta, len(base)) if args.meta else None
    results: dict[str, Any] = {}
    for key in args.only.split(","):
        cls = PEERS[key]
        entry: dict[str, Any] = {"name": cls.name, "version": installed_version(cls.dist)}
        if key == "pgvector" and args.pg_dsn:
            entry["dsn"] = redact(args.pg_dsn)
        workdir = Path(tempfile.mkdtemp(prefix=f"shardvec-peer-{key}-"))
        peer = cls(workdir, int(base.shape[1]), args.k, args)
        try:
            entry.update(measure(peer, base, queries, gt, args))
            entry["status"] = "ok"
        except ImportError as exc:
            entry["status"] = f"not installed: {exc}"
        except LookupError as exc:
            entry["status"] = f"not given: {exc}"
        except Exception as exc:
            entry["status"] = f"failed: {type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            try:
                peer.close()
            except Exception:
                traceback.print_exc()
            entry["version"] = peer.version()
            shutil.rmtree(workdir, ignore_errors=True)
        results[key] = entry
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
