from shardvec.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Alias(_message.Message):
    __slots__ = ("name", "collection")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    collection: str
    def __init__(self, name: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class CreateAliasRequest(_message.Message):
    __slots__ = ("alias", "collection")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    alias: str
    collection: str
    def __init__(self, alias: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class SwitchAliasRequest(_message.Message):
    __slots__ = ("alias", "collection", "embedding_changed")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_CHANGED_FIELD_NUMBER: _ClassVar[int]
    alias: str
    collection: str
    embedding_changed: bool
    def __init__(self, alias: _Optional[str] = ..., collection: _Optional[str] = ..., embedding_changed: _Optional[bool] = ...) -> None: ...

class DeleteAliasRequest(_message.Message):
    __slots__ = ("alias",)
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    alias: str
    def __init__(self, alias: _Optional[str] = ...) -> None: ...

class AliasResponse(_message.Message):
    __slots__ = ("alias", "previous")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    alias: Alias
    previous: str
    def __init__(self, alias: _Optional[_Union[Alias, _Mapping]] = ..., previous: _Optional[str] = ...) -> None: ...

class FacetRequest(_message.Message):
    __slots__ = ("collection", "field", "filter", "where_document", "limit")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    WHERE_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    collection: str
    field: str
    filter: _common_pb2.Filter
    where_document: _common_pb2.DocumentFilter
    limit: int
    def __init__(self, collection: _Optional[str] = ..., field: _Optional[str] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., where_document: _Optional[_Union[_common_pb2.DocumentFilter, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class FacetResponse(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[_common_pb2.FacetCount]
    def __init__(self, values: _Optional[_Iterable[_Union[_common_pb2.FacetCount, _Mapping]]] = ...) -> None: ...

class RebalanceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RebalanceMove(_message.Message):
    __slots__ = ("collection", "shard", "replica", "source", "target", "rows")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    shard: int
    replica: int
    source: str
    target: str
    rows: int
    def __init__(self, collection: _Optional[str] = ..., shard: _Optional[int] = ..., replica: _Optional[int] = ..., source: _Optional[str] = ..., target: _Optional[str] = ..., rows: _Optional[int] = ...) -> None: ...

class RebalanceResponse(_message.Message):
    __slots__ = ("moves",)
    MOVES_FIELD_NUMBER: _ClassVar[int]
    moves: _containers.RepeatedCompositeFieldContainer[RebalanceMove]
    def __init__(self, moves: _Optional[_Iterable[_Union[RebalanceMove, _Mapping]]] = ...) -> None: ...

class ScaleCollectionRequest(_message.Message):
    __slots__ = ("name", "shards", "replicas", "abort")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    name: str
    shards: int
    replicas: int
    abort: bool
    def __init__(self, name: _Optional[str] = ..., shards: _Optional[int] = ..., replicas: _Optional[int] = ..., abort: _Optional[bool] = ...) -> None: ...

class LayoutChange(_message.Message):
    __slots__ = ("kind", "phase", "target_shards", "target_replicas", "rows_copied", "rows_total", "started_unix", "error")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    TARGET_SHARDS_FIELD_NUMBER: _ClassVar[int]
    TARGET_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ROWS_COPIED_FIELD_NUMBER: _ClassVar[int]
    ROWS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    kind: str
    phase: str
    target_shards: int
    target_replicas: int
    rows_copied: int
    rows_total: int
    started_unix: float
    error: str
    def __init__(self, kind: _Optional[str] = ..., phase: _Optional[str] = ..., target_shards: _Optional[int] = ..., target_replicas: _Optional[int] = ..., rows_copied: _Optional[int] = ..., rows_total: _Optional[int] = ..., started_unix: _Optional[float] = ..., error: _Optional[str] = ...) -> None: ...

class ClusterInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterFront(_message.Message):
    __slots__ = ("address", "node_id", "metrics_address")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    address: str
    node_id: str
    metrics_address: str
    def __init__(self, address: _Optional[str] = ..., node_id: _Optional[str] = ..., metrics_address: _Optional[str] = ...) -> None: ...

class ClusterInfoResponse(_message.Message):
    __slots__ = ("fronts", "coordinator", "served_by")
    FRONTS_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    fronts: _containers.RepeatedCompositeFieldContainer[ClusterFront]
    coordinator: str
    served_by: str
    def __init__(self, fronts: _Optional[_Iterable[_Union[ClusterFront, _Mapping]]] = ..., coordinator: _Optional[str] = ..., served_by: _Optional[str] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "dimension", "metric", "shards", "replicas", "index", "embedding", "text_tokenizer", "target_recall", "ttl_seconds", "payload_on_disk")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    TEXT_TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    TARGET_RECALL_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_ON_DISK_FIELD_NUMBER: _ClassVar[int]
    name: str
    dimension: int
    metric: _common_pb2.Metric
    shards: int
    replicas: int
    index: _common_pb2.IndexParams
    embedding: str
    text_tokenizer: str
    target_recall: float
    ttl_seconds: float
    payload_on_disk: bool
    def __init__(self, name: _Optional[str] = ..., dimension: _Optional[int] = ..., metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., shards: _Optional[int] = ..., replicas: _Optional[int] = ..., index: _Optional[_Union[_common_pb2.IndexParams, _Mapping]] = ..., embedding: _Optional[str] = ..., text_tokenizer: _Optional[str] = ..., target_recall: _Optional[float] = ..., ttl_seconds: _Optional[float] = ..., payload_on_disk: _Optional[bool] = ...) -> None: ...

class SetCollectionOptionsRequest(_message.Message):
    __slots__ = ("name", "target_recall", "ttl_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_RECALL_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    target_recall: float
    ttl_seconds: float
    def __init__(self, name: _Optional[str] = ..., target_recall: _Optional[float] = ..., ttl_seconds: _Optional[float] = ...) -> None: ...

class DropCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DropCollectionResponse(_message.Message):
    __slots__ = ("dropped",)
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    dropped: bool
    def __init__(self, dropped: _Optional[bool] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections", "aliases")
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[CollectionInfo]
    aliases: _containers.RepeatedCompositeFieldContainer[Alias]
    def __init__(self, collections: _Optional[_Iterable[_Union[CollectionInfo, _Mapping]]] = ..., aliases: _Optional[_Iterable[_Union[Alias, _Mapping]]] = ...) -> None: ...

class DescribeCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ReplicaInfo(_message.Message):
    __slots__ = ("shard", "replica", "state", "address", "node_id", "pid", "count", "applied_seq", "reason")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    shard: int
    replica: int
    state: str
    address: str
    node_id: str
    pid: int
    count: int
    applied_seq: int
    reason: str
    def __init__(self, shard: _Optional[int] = ..., replica: _Optional[int] = ..., state: _Optional[str] = ..., address: _Optional[str] = ..., node_id: _Optional[str] = ..., pid: _Optional[int] = ..., count: _Optional[int] = ..., applied_seq: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class CollectionInfo(_message.Message):
    __slots__ = ("name", "dimension", "metric", "shards", "replicas", "index", "count", "replica_states", "embedding", "layout_version", "change", "text_tokenizer", "target_recall", "recall_estimate", "search_ef", "tuned_rows", "tuned_layout_version", "recall_queries", "tuned_unix", "ttl_seconds", "payload_on_disk")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    REPLICA_STATES_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    TEXT_TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    TARGET_RECALL_FIELD_NUMBER: _ClassVar[int]
    RECALL_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    SEARCH_EF_FIELD_NUMBER: _ClassVar[int]
    TUNED_ROWS_FIELD_NUMBER: _ClassVar[int]
    TUNED_LAYOUT_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECALL_QUERIES_FIELD_NUMBER: _ClassVar[int]
    TUNED_UNIX_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_ON_DISK_FIELD_NUMBER: _ClassVar[int]
    name: str
    dimension: int
    metric: _common_pb2.Metric
    shards: int
    replicas: int
    index: _common_pb2.IndexParams
    count: int
    replica_states: _containers.RepeatedCompositeFieldContainer[ReplicaInfo]
    embedding: str
    layout_version: int
    change: LayoutChange
    text_tokenizer: str
    target_recall: float
    recall_estimate: float
    search_ef: int
    tuned_rows: int
    tuned_layout_version: int
    recall_queries: int
    tuned_unix: float
    ttl_seconds: float
    payload_on_disk: bool
    def __init__(self, name: _Optional[str] = ..., dimension: _Optional[int] = ..., metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., shards: _Optional[int] = ..., replicas: _Optional[int] = ..., index: _Optional[_Union[_common_pb2.IndexParams, _Mapping]] = ..., count: _Optional[int] = ..., replica_states: _Optional[_Iterable[_Union[ReplicaInfo, _Mapping]]] = ..., embedding: _Optional[str] = ..., layout_version: _Optional[int] = ..., change: _Optional[_Union[LayoutChange, _Mapping]] = ..., text_tokenizer: _Optional[str] = ..., target_recall: _Optional[float] = ..., recall_estimate: _Optional[float] = ..., search_ef: _Optional[int] = ..., tuned_rows: _Optional[int] = ..., tuned_layout_version: _Optional[int] = ..., recall_queries: _Optional[int] = ..., tuned_unix: _Optional[float] = ..., ttl_seconds: _Optional[float] = ..., payload_on_disk: _Optional[bool] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("collection", "ids", "vectors", "metadata_json", "documents", "ttl_seconds", "expires_at")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    vectors: _common_pb2.Vectors
    metadata_json: _containers.RepeatedScalarFieldContainer[str]
    documents: _containers.RepeatedScalarFieldContainer[str]
    ttl_seconds: _containers.RepeatedScalarFieldContainer[float]
    expires_at: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., vectors: _Optional[_Union[_common_pb2.Vectors, _Mapping]] = ..., metadata_json: _Optional[_Iterable[str]] = ..., documents: _Optional[_Iterable[str]] = ..., ttl_seconds: _Optional[_Iterable[float]] = ..., expires_at: _Optional[_Iterable[float]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted",)
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    def __init__(self, upserted: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("collection", "ids", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    filter: _common_pb2.Filter
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("collection", "ids", "include", "filter", "where_document", "limit")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    WHERE_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    include: _common_pb2.Include
    filter: _common_pb2.Filter
    where_document: _common_pb2.DocumentFilter
    limit: int
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., include: _Optional[_Union[_common_pb2.Include, _Mapping]] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., where_document: _Optional[_Union[_common_pb2.DocumentFilter, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("ids", "metadata_json", "vectors", "documents", "expires_at")
    IDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    metadata_json: _containers.RepeatedScalarFieldContainer[str]
    vectors: _common_pb2.Vectors
    documents: _containers.RepeatedScalarFieldContainer[str]
    expires_at: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., metadata_json: _Optional[_Iterable[str]] = ..., vectors: _Optional[_Union[_common_pb2.Vectors, _Mapping]] = ..., documents: _Optional[_Iterable[str]] = ..., expires_at: _Optional[_Iterable[float]] = ...) -> None: ...

class CountRequest(_message.Message):
    __slots__ = ("collection", "filter", "where_document")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    WHERE_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter: _common_pb2.Filter
    where_document: _common_pb2.DocumentFilter
    def __init__(self, collection: _Optional[str] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., where_document: _Optional[_Union[_common_pb2.DocumentFilter, _Mapping]] = ...) -> None: ...

class CountResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("collection", "queries", "k", "filter", "ef", "exact", "min_score", "max_distance", "include", "query_texts", "query_ids", "where_document", "text_query", "fusion", "alpha", "rrf_k", "group_by", "group_size", "groups", "diversity", "candidates")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    EF_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    MAX_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FIELD_NUMBER: _ClassVar[int]
    QUERY_TEXTS_FIELD_NUMBER: _ClassVar[int]
    QUERY_IDS_FIELD_NUMBER: _ClassVar[int]
    WHERE_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    TEXT_QUERY_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    RRF_K_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    collection: str
    queries: _common_pb2.Vectors
    k: int
    filter: _common_pb2.Filter
    ef: int
    exact: bool
    min_score: float
    max_distance: float
    include: _common_pb2.Include
    query_texts: _containers.RepeatedScalarFieldContainer[str]
    query_ids: _containers.RepeatedScalarFieldContainer[str]
    where_document: _common_pb2.DocumentFilter
    text_query: _containers.RepeatedScalarFieldContainer[str]
    fusion: str
    alpha: float
    rrf_k: int
    group_by: str
    group_size: int
    groups: int
    diversity: float
    candidates: int
    def __init__(self, collection: _Optional[str] = ..., queries: _Optional[_Union[_common_pb2.Vectors, _Mapping]] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., ef: _Optional[int] = ..., exact: _Optional[bool] = ..., min_score: _Optional[float] = ..., max_distance: _Optional[float] = ..., include: _Optional[_Union[_common_pb2.Include, _Mapping]] = ..., query_texts: _Optional[_Iterable[str]] = ..., query_ids: _Optional[_Iterable[str]] = ..., where_document: _Optional[_Union[_common_pb2.DocumentFilter, _Mapping]] = ..., text_query: _Optional[_Iterable[str]] = ..., fusion: _Optional[str] = ..., alpha: _Optional[float] = ..., rrf_k: _Optional[int] = ..., group_by: _Optional[str] = ..., group_size: _Optional[int] = ..., groups: _Optional[int] = ..., diversity: _Optional[float] = ..., candidates: _Optional[int] = ...) -> None: ...

class QueryResult(_message.Message):
    __slots__ = ("ids", "scores", "metadata_json", "vectors", "documents", "group_values")
    IDS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    GROUP_VALUES_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    scores: _containers.RepeatedScalarFieldContainer[float]
    metadata_json: _containers.RepeatedScalarFieldContainer[str]
    vectors: bytes
    documents: _containers.RepeatedScalarFieldContainer[str]
    group_values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., scores: _Optional[_Iterable[float]] = ..., metadata_json: _Optional[_Iterable[str]] = ..., vectors: _Optional[bytes] = ..., documents: _Optional[_Iterable[str]] = ..., group_values: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[QueryResult]
    def __init__(self, results: _Optional[_Iterable[_Union[QueryResult, _Mapping]]] = ...) -> None: ...

class ScrollRequest(_message.Message):
    __slots__ = ("collection", "filter", "where_document", "limit", "cursor", "include", "slice", "slices")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    WHERE_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FIELD_NUMBER: _ClassVar[int]
    SLICE_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter: _common_pb2.Filter
    where_document: _common_pb2.DocumentFilter
    limit: int
    cursor: bytes
    include: _common_pb2.Include
    slice: int
    slices: int
    def __init__(self, collection: _Optional[str] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., where_document: _Optional[_Union[_common_pb2.DocumentFilter, _Mapping]] = ..., limit: _Optional[int] = ..., cursor: _Optional[bytes] = ..., include: _Optional[_Union[_common_pb2.Include, _Mapping]] = ..., slice: _Optional[int] = ..., slices: _Optional[int] = ...) -> None: ...

class ScrollResponse(_message.Message):
    __slots__ = ("ids", "metadata_json", "vectors", "documents", "next_cursor", "expires_at")
    IDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    metadata_json: _containers.RepeatedScalarFieldContainer[str]
    vectors: _common_pb2.Vectors
    documents: _containers.RepeatedScalarFieldContainer[str]
    next_cursor: bytes
    expires_at: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., metadata_json: _Optional[_Iterable[str]] = ..., vectors: _Optional[_Union[_common_pb2.Vectors, _Mapping]] = ..., documents: _Optional[_Iterable[str]] = ..., next_cursor: _Optional[bytes] = ..., expires_at: _Optional[_Iterable[float]] = ...) -> None: ...

class UpdateRequest(_message.Message):
    __slots__ = ("collection", "ids", "metadata_json", "replace_metadata", "documents", "upsert_missing", "vectors", "ttl_seconds", "expires_at")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    REPLACE_METADATA_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    UPSERT_MISSING_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    metadata_json: _containers.RepeatedScalarFieldContainer[str]
    replace_metadata: bool
    documents: _containers.RepeatedScalarFieldContainer[str]
    upsert_missing: bool
    vectors: _common_pb2.Vectors
    ttl_seconds: _containers.RepeatedScalarFieldContainer[float]
    expires_at: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., metadata_json: _Optional[_Iterable[str]] = ..., replace_metadata: _Optional[bool] = ..., documents: _Optional[_Iterable[str]] = ..., upsert_missing: _Optional[bool] = ..., vectors: _Optional[_Union[_common_pb2.Vectors, _Mapping]] = ..., ttl_seconds: _Optional[_Iterable[float]] = ..., expires_at: _Optional[_Iterable[float]] = ...) -> None: ...

class UpdateResponse(_message.Message):
    __slots__ = ("updated", "missing_ids", "inserted")
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    MISSING_IDS_FIELD_NUMBER: _ClassVar[int]
    INSERTED_FIELD_NUMBER: _ClassVar[int]
    updated: int
    missing_ids: _containers.RepeatedScalarFieldContainer[str]
    inserted: int
    def __init__(self, updated: _Optional[int] = ..., missing_ids: _Optional[_Iterable[str]] = ..., inserted: _Optional[int] = ...) -> None: ...

class CreateSnapshotRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("data", "restore_as", "shards", "replicas")
    DATA_FIELD_NUMBER: _ClassVar[int]
    RESTORE_AS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    restore_as: str
    shards: int
    replicas: int
    def __init__(self, data: _Optional[bytes] = ..., restore_as: _Optional[str] = ..., shards: _Optional[int] = ..., replicas: _Optional[int] = ...) -> None: ...
