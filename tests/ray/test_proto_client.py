"""A client built only from the .proto files, as a client in another language would be."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shardvec.cluster.bringup import ShardvecCluster

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, struct, sys
    sys.path.insert(0, sys.argv[1])
    import grpc
    from shardvec.v1 import vector_search_pb2 as pb, vector_search_pb2_grpc as rpc, common_pb2
    assert sys.argv[1] in pb.__file__, pb.__file__  # the stub generated here, not the package
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    ch = grpc.insecure_channel(sys.argv[2])
    health = health_pb2_grpc.HealthStub(ch).Check(
        health_pb2.HealthCheckRequest(service="shardvec.v1.VectorSearch"), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    stub = rpc.VectorSearchStub(ch)
    name = sys.argv[3]
    stub.CreateCollection(pb.CreateCollectionRequest(
        name=name, dimension=3, metric=common_pb2.EUCLIDEAN, shards=2), timeout=60)
    # repeated floats, the convenience form
    up = pb.UpsertRequest(collection=name, ids=["a", "b", "c"],
                          metadata_json=['{"n": 1}', '{"n": 2}', ""])
    up.vectors.dim = 3
    up.vectors.values.extend([0, 0, 0, 1, 0, 0, 5, 5, 5])
    assert stub.Upsert(up, timeout=30).upserted == 3
    # packed float32, the fast path
    q = pb.SearchRequest(collection=name, k=2)
    q.queries.dim = 3
    q.queries.packed = struct.pack("<3f", 0.9, 0, 0)
    q.include.metadata = True
    res = stub.Search(q, timeout=30).results[0]
    assert list(res.ids) == ["b", "a"], res
    assert abs(res.scores[0] - 0.1) < 1e-5 and abs(res.scores[1] - 0.9) < 1e-5
    assert json.loads(res.metadata_json[0]) == {"n": 2}
    f = common_pb2.Filter()
    f.condition.field = "n"
    f.condition.op = common_pb2.Condition.GTE
    f.condition.value_json = "2"
    assert stub.Count(pb.CountRequest(collection=name, filter=f), timeout=30).count == 1
    try:
        stub.DescribeCollection(pb.DescribeCollectionRequest(name="nope"), timeout=10)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND
    else:
        raise AssertionError("expected NOT_FOUND")
    stub.DropCollection(pb.DropCollectionRequest(name=name), timeout=60)
    print("ok")
    """
)


def test_client_from_proto_only(cluster: ShardvecCluster, name: str, tmp_path: Path) -> None:
    gen = tmp_path / "gen"
    gen.mkdir()
    protos = sorted(str(p.relative_to(REPO / "proto")) for p in (REPO / "proto").rglob("*.proto"))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{REPO / 'proto'}", f"--python_out={gen}",
         f"--grpc_python_out={gen}", *protos],
        check=True,
    )
    for pkg in (gen / "shardvec", gen / "shardvec" / "v1"):
        (pkg / "__init__.py").touch()
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(gen), cluster.address, name],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_reflection_lists_the_service(cluster: ShardvecCluster) -> None:
    import grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(cluster.address) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        resp = next(iter(stub.ServerReflectionInfo(iter([req]), timeout=10)))
        names = {s.name for s in resp.list_services_response.service}
    assert {"shardvec.v1.VectorSearch", "grpc.health.v1.Health"} <= names
