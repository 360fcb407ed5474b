"""Chroma embedded (a PersistentClient in this process) and as a server (`chroma run` from
this interpreter's bin/, driven over HTTP)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import Peer, SingleSearch, free_port


class Chroma(Peer):
    name, dist = "chroma (embedded)", "chromadb"

    def build(self, base: np.ndarray) -> None:
        import chromadb

        self.client = chromadb.PersistentClient(path=str(self.workdir / "chroma"))
        self.fill(base, 5000)

    def fill(self, base: np.ndarray, step: int) -> None:
        """Create the collection (M=16, ef_construction=200) and add `base` in batches."""
        conf = {"space": "cosine", "ef_construction": 200, "max_neighbors": 16, "ef_search": 64}
        self.col = self.client.create_collection("bench", configuration={"hnsw": conf})
        step = min(step, int(self.client.get_max_batch_size()))
        for s in range(0, len(base), step):
            rows = base[s : s + step]
            self.col.add(ids=[str(i) for i in range(s, s + len(rows))], embeddings=rows)
        self.ef = 64

    def reopen(self) -> None:
        from chromadb.api.client import SharedSystemClient

        path = self.workdir / "chroma"
        SharedSystemClient.clear_system_cache()
        import chromadb

        self.client = chromadb.PersistentClient(path=str(path))
        self.col = self.client.get_collection("bench")

    def search(self, queries: np.ndarray, ef: int | None) -> list[list[int]]:
        if ef is not None and ef != self.ef:
            self.col.modify(configuration={"hnsw": {"ef_search": ef}})
            self.ef = ef
            self.reopen()  # chromadb 1.5.9: modify() does not reach an index already loaded
        res = self.col.query(query_embeddings=queries, n_results=self.k, include=[])
        return [[int(i) for i in row] for row in res["ids"]]


class ChromaServer(Chroma):
    name, dist = "chroma server", "chromadb"
    networked = True

    def build(self, base: np.ndarray) -> None:
        self.start()
        self.fill(base, 2000)  # JSON over HTTP: keep batches small

    def reopen(self) -> None:
        self.close()  # the server keeps the loaded index: restart it on the same path
        self.start()
        self.col = self.client.get_collection("bench")

    def start(self) -> None:
        self.port = free_port()
        exe = Path(sys.executable).parent / "chroma"
        self.log = (self.workdir / "chroma-server.log").open("ab")
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        cmd = [str(exe), "run", "--path", str(self.workdir / "chroma-server"),
               "--host", "127.0.0.1", "--port", str(self.port)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client = self._client()
                self.client.heartbeat()
                break
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.workdir / "chroma-server.log").read_text(errors="replace")
                    raise RuntimeError(f"chroma run did not come up: {tail[-500:]}") from None
                time.sleep(0.2)

    def _client(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        return chromadb.HttpClient(host="127.0.0.1", port=self.port,
                                   settings=Settings(anonymized_telemetry=False))  # fmt: skip

    def single_client(self, ef: int | None) -> SingleSearch | None:
        col = self._client().get_collection("bench")  # ef_search is the collection's, set

        def one(q: np.ndarray) -> list[int]:
            res = col.query(query_embeddings=q[None, :], n_results=self.k, include=[])
            return [int(i) for i in res["ids"][0]]

        return one

    def close(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if getattr(self, "log", None) is not None:
            self.log.close()
