"""Memory per row of one replica with its metadata and documents in memory against on disk
(`payload_on_disk`), and what reading them from the store costs a search (issue #26).

Loads the shared set's first `--n` rows (default 100k, no growth) with their real payloads:
each row's metadata is its base_texts.jsonl record less the text (name, month, year, popular,
rank) and its document the text (the package summary). Each mode runs in a child process of
its own (forked before anything is loaded, so neither sees the other's heap), which loads the
rows into one ShardEngine in batches of `--batch` and measures:
  - memory: the process's PSS growth over the load, per row, and each part's bytes per row
    (bench/rowmem.py `parts`: with the setting on, the texts and documents parts are 0 and
    each row holds an 8-byte seq instead);
  - single-query p50 / p90 ms over `--queries` real queries, k=10: a plain search
    (ids only), with include_metadata, with include_metadata and include_documents, and with
    a where_document {"$contains": "python"} filter (ids only);
  - the answers of the searches with payloads, compared between the two modes.

    shardvec bench payload-memory [--n 100000] [--queries 200] [--batch 5000] [--data DIR]
                                   [--out PATH]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.bench.datasets import default_data, load_jsonl, require_data
from shardvec.bench.results import format_table, write_results
from shardvec.bench.rowmem import parts
from shardvec.bench.rows import pss_bytes
from shardvec.contract.filters import parse_where_document
from shardvec.contract.settings import IndexSettings
from shardvec.shard.engine import ShardEngine

K = 10
CONTAINS = {"$contains": "python"}
KINDS: dict[str, dict[str, Any]] = {
    "ids_only": {},
    "with_metadata": {"include_metadata": True},
    "with_metadata_and_documents": {"include_metadata": True, "include_documents": True},
    "where_document_contains": {"where_document": parse_where_document(CONTAINS)},
}


def _load(data: Path, n: int) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    base = np.load(data / "base.npy", mmap_mode="r")[:n].astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = np.load(data / "queries.npy").astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    records = load_jsonl(data / "base_texts.jsonl", n)
    if len(records) < n:
        raise ValueError(f"{data}/base_texts.jsonl has {len(records)} rows, fewer than {n}")
    return base, queries, records


def _timed(eng: ShardEngine, queries: np.ndarray, **kw: Any) -> tuple[dict[str, Any], list[Any]]:
    eng.search(queries[:1], K, **kw)  # warm
    lat, answers = [], []
    for j in range(len(queries)):
        t0 = time.perf_counter()
        res = eng.search(queries[j : j + 1], K, **kw)
        lat.append(time.perf_counter() - t0)
        md = res.metadata[0].tolist() if res.metadata is not None else None
        docs = res.documents[0].tolist() if res.documents is not None else None
        answers.append([res.ids[0].tolist(), md, docs])
    ms = np.asarray(lat) * 1e3
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
    }, answers


def one_mode(args: argparse.Namespace, on_disk: bool, data: tuple[Any, ...], out: Connection
             ) -> None:  # fmt: skip
    """One child: load the rows with the setting `on_disk`, measure, send the result back."""
    base, queries, records = data
    n, dim = base.shape
    result: dict[str, Any] = {"payload_on_disk": on_disk}
    with tempfile.TemporaryDirectory() as tmp:
        gc.collect()
        before = pss_bytes([os.getpid()])
        settings = IndexSettings(dim=dim, payload_on_disk=on_disk)
        eng = ShardEngine(Path(tmp), settings, checkpoint_rows=1 << 40)
        t0 = time.perf_counter()
        for seq, s in enumerate(range(0, n, args.batch), start=1):
            e = min(n, s + args.batch)  # ids, metadata and documents made here: the engine's
            recs = records[s:e]
            eng.upsert(
                seq,
                [str(i) for i in range(s, e)],
                base[s:e],
                [{k: v for k, v in r.items() if k not in ("id", "text")} for r in recs],
                [str(r.get("text") or "") for r in recs],
            )
        result["load_s"] = round(time.perf_counter() - t0, 1)
        gc.collect()
        grown = pss_bytes([os.getpid()]) - before
        split = parts(eng)
        per_row = {k: round(v / n, 1) for k, v in split.items()}
        per_row["rest (allocators, SQLite, Python)"] = round((grown - sum(split.values())) / n, 1)
        result["pss_bytes_per_row"] = round(grown / n, 1)
        result["parts_bytes_per_row"] = per_row
        result["rowdata_nbytes_per_row"] = round(eng._rows.nbytes(eng._slots.n_slots) / n, 1)
        answers: dict[str, list[Any]] = {}
        for name, kw in KINDS.items():
            result[name], answers[name] = _timed(eng, queries[: args.queries], **kw)
        eng.close()
    out.send((result, answers))
    out.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = require_data(args.data) if args.data is not None else default_data()
    base, queries, records = _load(data_dir, args.n)
    n, dim = base.shape
    text_chars = sum(len(str(r.get("text") or "")) for r in records) / n
    print(f"{n:,} x {dim} rows of {data_dir}; each mode in a child process", flush=True)
    out: dict[str, Any] = {"n": n, "dim": dim, "data": str(data_dir), "k": K,
                           "queries": args.queries, "mean_document_chars": round(text_chars, 1),
                           "load_average_start": list(os.getloadavg())}  # fmt: skip
    ctx = mp.get_context("fork")
    answers = {}
    for label, on_disk in (("in_memory", False), ("on_disk", True)):
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=one_mode, args=(args, on_disk, (base, queries, records), send))
        proc.start()
        send.close()
        out[label], answers[label] = recv.recv()
        proc.join()
        r = out[label]
        print(f"{label}: {r['pss_bytes_per_row']:,.0f} B/row, search with metadata p50 "
              f"{r['with_metadata']['p50_ms']} ms", flush=True)  # fmt: skip
    out["same_answers"] = {
        name: answers["in_memory"][name] == answers["on_disk"][name] for name in KINDS
    }
    out["load_average_end"] = list(os.getloadavg())
    return out


def table(r: dict[str, Any]) -> str:
    mem, disk = r["in_memory"], r["on_disk"]
    lines: list[list[Any]] = [
        ["PSS per row (B)", f"{mem['pss_bytes_per_row']:,.0f}",
         f"{disk['pss_bytes_per_row']:,.0f}"],
        ["RowData.nbytes per row (B)", mem["rowdata_nbytes_per_row"],
         disk["rowdata_nbytes_per_row"]],
    ]  # fmt: skip
    for part in mem["parts_bytes_per_row"]:
        lines.append([f"  {part}", mem["parts_bytes_per_row"][part],
                      disk["parts_bytes_per_row"].get(part, 0.0)])  # fmt: skip
    for part in disk["parts_bytes_per_row"]:
        if part not in mem["parts_bytes_per_row"]:
            lines.append([f"  {part}", 0.0, disk["parts_bytes_per_row"][part]])
    for name in KINDS:
        same = "same" if r["same_answers"][name] else "DIFFERENT"
        lines.append([f"{name} p50 / p90 ms ({same} answers)",
                      f"{mem[name]['p50_ms']} / {mem[name]['p90_ms']}",
                      f"{disk[name]['p50_ms']} / {disk[name]['p90_ms']}"])  # fmt: skip
    return format_table(lines, [f"{r['n']:,} x {r['dim']}", "in memory", "payload_on_disk"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="shardvec bench payload-memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--n", type=int, default=100_000, help="rows of the shared set to load")
    p.add_argument("--queries", type=int, default=200, help="real queries timed per kind")
    p.add_argument("--batch", type=int, default=5_000, help="rows per upsert")
    p.add_argument("--data", type=Path, default=None, help="the shared set's directory")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (bench/results/payload_memory.json)")  # fmt: skip
    args = p.parse_args(argv)
    result = run(args)
    print(table(result))
    write_results("payload_memory", result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
