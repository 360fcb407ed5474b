"""Access control through real servers: API keys, the read-only key, TLS on the public port,
the internal token of the shard service, and Ray's own token authentication.

One `shardvec up` process serves TLS with both keys (the full key from SHARDVEC_API_KEY, the
read-only key from its flag); the internal-token checks use the session cluster.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client
from shardvec.contract.errors import (
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from shardvec.contract.limits import TOKEN_HEADER
from shardvec.v1 import common_pb2, shard_pb2, shard_pb2_grpc
from shardvec.v1 import vector_search_pb2 as pb
from shardvec.v1 import vector_search_pb2_grpc as pb_grpc
from tests.procs import ServerProcess, free_port

pytestmark = pytest.mark.ray

FULL_KEY = "full-key-7f3a9c"
READ_KEY = "read-key-21be04"
Code = grpc.StatusCode


def _self_signed(directory: Path, stem: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "2", "-subj", "/CN=shardvec-test", "-keyout", str(key),
             "-out", str(cert), "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True, capture_output=True,
        )
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"shardvec-test-{stem}")])
    now = datetime.datetime.now(datetime.UTC)
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(built.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


@dataclass
class Secured:
    address: str
    ca: bytes
    other_ca: bytes
    name: str  # a collection created with the full key, holding ROWS rows

    def client(self, key: str | None) -> Client:
        return Client(self.address, api_key=key, tls_ca=self.ca, timeout=60)

    def channel(self) -> grpc.Channel:
        return grpc.secure_channel(self.address, grpc.ssl_channel_credentials(self.ca))


ROWS = 50


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    tmp = tmp_path_factory.mktemp("auth")
    cert, key = _self_signed(tmp, "server")
    other_cert, _ = _self_signed(tmp, "other")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHARDVEC_API_KEY", FULL_KEY)  # the full key through the environment
        server = ServerProcess(
            tmp / "data", free_port(), "--read-only-key", READ_KEY,
            "--tls-cert", str(cert), "--tls-key", str(key), "--num-cpus", "2",
            "--limit", "max_upsert_rows=20", "--limit", "max_k=50",
        )
    try:
        s = Secured(server.address, cert.read_bytes(), other_cert.read_bytes(), "secured")
        with s.client(FULL_KEY) as c:
            col = c.create_collection(s.name, dim=4, metric="euclidean", shards=2)
            vecs = np.random.default_rng(5).standard_normal((ROWS, 4))
            col.upsert([f"s{i}" for i in range(ROWS)], vecs, [{"i": i} for i in range(ROWS)],
                       batch_size=20)
        yield s
    finally:
        assert server.stop() == 0


def _calls(c: Client, name: str) -> dict[str, Callable[[], Any]]:
    """One call of each public method; the writes would change `name` if they were let in."""
    return {
        "ListCollections": lambda: c.list_collections(),
        "DescribeCollection": lambda: c.describe(name),
        "Count": lambda: c.call("Count", pb.CountRequest(collection=name)),
        "Get": lambda: c.call("Get", pb.GetRequest(collection=name, ids=["s1"])),
        "Search": lambda: c.call(
            "Search",
            pb.SearchRequest(
                collection=name, k=3, queries=common_pb2.Vectors(dim=4, values=[1, 0, 0, 0])
            ),
        ),
        "Upsert": lambda: c.call(
            "Upsert",
            pb.UpsertRequest(
                collection=name, ids=["intruder"],
                vectors=common_pb2.Vectors(dim=4, values=[9, 9, 9, 9]),
            ),
        ),
        "Delete": lambda: c.call("Delete", pb.DeleteRequest(collection=name, ids=["s1"])),
        "CreateCollection": lambda: c.create_collection("made_by_intruder", dim=4),
        "DropCollection": lambda: c.drop_collection(name),
    }


READS = ("ListCollections", "DescribeCollection", "Count", "Get", "Search")
WRITES = ("Upsert", "Delete", "CreateCollection", "DropCollection")


def _assert_intact(s: Secured) -> None:
    with s.client(FULL_KEY) as c:
        assert [x["name"] for x in c.list_collections()] == [s.name]
        col = c.get_collection(s.name)
        assert col.count() == ROWS
        assert len(col.get([f"s{i}" for i in range(ROWS)])) == ROWS
        assert col.get(["intruder"]) == []


@pytest.mark.parametrize("key", [None, "", "wrong-key", FULL_KEY + "x", READ_KEY[:-1]])
def test_no_key_or_a_wrong_key_is_unauthenticated(secured: Secured, key: str | None) -> None:
    with secured.client(key) as c:
        for method, call in _calls(c, secured.name).items():
            with pytest.raises(Unauthenticated) as info:
                call()
            assert "API key" in info.value.message and "x-api-key" in info.value.message, method
    _assert_intact(secured)


def test_streaming_rpcs_are_guarded_too(secured: Secured) -> None:
    with secured.channel() as channel:
        stub = pb_grpc.VectorSearchStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.CreateSnapshot(pb.CreateSnapshotRequest(collection=secured.name),
                                     timeout=30))
        assert info.value.code() == Code.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            stub.RestoreSnapshot(iter([pb.SnapshotChunk(data=b"x", restore_as="evil")]),
                                 timeout=30, metadata=(("x-api-key", READ_KEY),))
        assert info.value.code() == Code.PERMISSION_DENIED
        assert "read-only key may not write" in (info.value.details() or "")
    _assert_intact(secured)


def test_read_only_key_reads_but_may_not_write(secured: Secured) -> None:
    with secured.client(READ_KEY) as c:
        calls = _calls(c, secured.name)
        for method in READS:
            calls[method]()
        assert c.get_collection(secured.name).count() == ROWS
        hits = c.get_collection(secured.name).search([1, 0, 0, 0], k=3)
        assert len(hits[0]) == 3
        for method in WRITES:
            with pytest.raises(PermissionDenied) as info:
                calls[method]()
            assert f"{method}: the read-only key may not write" in info.value.message
    _assert_intact(secured)


def test_full_key_does_everything(secured: Secured) -> None:
    with secured.client(FULL_KEY) as c:
        col = c.create_collection("full_key_scratch", dim=4, metric="dot")
        assert col.upsert(["a", "b"], [[1, 0, 0, 0], [0, 1, 0, 0]], [{"x": 1}, None]) == 2
        assert col.search([1, 0, 0, 0], k=1)[0][0].id == "a"
        assert [r.id for r in col.get(["a", "b"])] == ["a", "b"]
        assert col.delete(["b"]) == 1 and col.count() == 1
        c.drop_collection("full_key_scratch")
    _assert_intact(secured)


def test_configured_limits_apply(secured: Secured) -> None:
    """Limits given to `shardvec up --limit` reach the server (defaults: 10000 rows, k 1024)."""
    with secured.client(FULL_KEY) as c:
        col = c.get_collection(secured.name)
        with pytest.raises(ResourceExhausted, match="upsert: 21 rows, the limit is 20"):
            col.upsert([f"new{i}" for i in range(21)], np.ones((21, 4)), batch_size=21)
        with pytest.raises(InvalidArgument, match=r"k must be in \[1, 50\], got 51"):
            col.search([1, 0, 0, 0], k=51)
        assert len(col.search([1, 0, 0, 0], k=50)[0]) == ROWS
    _assert_intact(secured)


def test_health_and_reflection_stay_open_without_a_key(secured: Secured) -> None:
    with secured.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "shardvec.v1.VectorSearch"):
            resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        resp = next(iter(stub.ServerReflectionInfo(iter([req]), timeout=30)))
        names = {s.name for s in resp.list_services_response.service}
        assert "shardvec.v1.VectorSearch" in names


def test_tls_needs_the_right_certificate(secured: Secured) -> None:
    with secured.client(FULL_KEY) as c:  # TLS with the server's certificate as the root
        assert c.get_collection(secured.name).count() == ROWS
    with grpc.insecure_channel(secured.address) as plain:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.VectorSearchStub(plain).ListCollections(
                pb.ListCollectionsRequest(), timeout=10, metadata=(("x-api-key", FULL_KEY),)
            )
        assert info.value.code() == Code.UNAVAILABLE
    creds = grpc.ssl_channel_credentials(secured.other_ca)
    with grpc.secure_channel(secured.address, creds) as wrong_ca:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.VectorSearchStub(wrong_ca).ListCollections(
                pb.ListCollectionsRequest(), timeout=10, metadata=(("x-api-key", FULL_KEY),)
            )
        assert info.value.code() == Code.UNAVAILABLE
    _assert_intact(secured)


# ---------------------------------------------------------------- internal shard service


def _shard_calls(stub: Any) -> list[Callable[[Any], Any]]:
    """Every Shard method, each taking the call metadata; the writes would change data."""
    write = shard_pb2.ShardStageRequest(seq=10**9, ids=["evil"], delete_ids=["a"])
    write.vectors.dim = 4
    write.vectors.packed = np.ones(4, dtype="<f4").tobytes()
    commit = shard_pb2.ShardResolveRequest(seq=10**9, commit=True)
    return [
        lambda md: stub.Info(shard_pb2.ShardInfoRequest(), metadata=md, timeout=30),
        lambda md: stub.Count(shard_pb2.ShardCountRequest(), metadata=md, timeout=30),
        lambda md: stub.Get(shard_pb2.ShardGetRequest(ids=["a"]), metadata=md, timeout=30),
        lambda md: stub.Search(
            shard_pb2.ShardSearchRequest(k=1, queries=write.vectors), metadata=md, timeout=30
        ),
        lambda md: stub.Stage(write, metadata=md, timeout=30),
        lambda md: stub.Resolve(commit, metadata=md, timeout=30),
        lambda md: stub.Changes(shard_pb2.ShardChangesRequest(), metadata=md, timeout=30),
        lambda md: list(stub.Snapshot(shard_pb2.ShardSnapshotRequest(), metadata=md, timeout=30)),
    ]


def test_shard_service_needs_the_internal_token(
    client: Client, cluster: ShardvecCluster, name: str
) -> None:
    col = client.create_collection(name, dim=4, metric="euclidean", shards=2)
    col.upsert(["a", "b", "c"], np.eye(4)[:3])
    replicas = client.describe(name)["replica_states"]
    assert len(replicas) == 2
    token = cluster.settings["token"]
    assert len(token) >= 32
    for r in replicas:
        host, _, port = r["address"].rpartition(":")
        assert host == "127.0.0.1" and int(port) > 0  # the node's own (loopback) address
        with grpc.insecure_channel(r["address"]) as channel:
            stub = shard_pb2_grpc.ShardStub(channel)
            calls = _shard_calls(stub)
            for md in ((), ((TOKEN_HEADER, "wrong"),), ((TOKEN_HEADER, token[:-1]),)):
                for call in calls:
                    with pytest.raises(grpc.RpcError) as info:
                        call(md)
                    assert info.value.code() == Code.UNAUTHENTICATED
                    assert "internal token" in (info.value.details() or "")
            info_ok = stub.Info(
                shard_pb2.ShardInfoRequest(), metadata=((TOKEN_HEADER, token),), timeout=30
            )
            assert json.loads(info_ok.info_json)["count"] == r["count"]
    assert col.count() == 3 and col.get(["evil"]) == []
    assert {r.id for r in col.get(["a", "b", "c"])} == {"a", "b", "c"}
    client.drop_collection(name)


def test_ray_token_authentication_stays_on(cluster: ShardvecCluster) -> None:
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    assert os.environ.get("RAY_AUTH_MODE", "token") != "disabled"
    assert is_token_auth_enabled()
