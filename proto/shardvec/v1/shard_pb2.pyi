from shardvec.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeywordStatsRequest(_message.Message):
    __slots__ = ("texts", "buckets")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    buckets: bytes
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., buckets: _Optional[bytes] = ...) -> None: ...

class KeywordTerms(_message.Message):
    __slots__ = ("terms", "doc_freqs")
    TERMS_FIELD_NUMBER: _ClassVar[int]
    DOC_FREQS_FIELD_NUMBER: _ClassVar[int]
    terms: _containers.RepeatedScalarFieldContainer[str]
    doc_freqs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, terms: _Optional[_Iterable[str]] = ..., doc_freqs: _Optional[_Iterable[int]] = ...) -> None: ...

class KeywordStatsResponse(_message.Message):
    __slots__ = ("queries", "doc_count", "total_tokens")
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    DOC_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[KeywordTerms]
    doc_count: int
    total_tokens: int
    def __init__(self, queries: _Optional[_Iterable[_Union[KeywordTerms, _Mapping]]] = ..., doc_count: _Optional[int] = ..., total_tokens: _Optional[int] = ...) -> None: ...

class KeywordSearchRequest(_message.Message):
    __slots__ = ("queries", "doc_count", "total_tokens", "k", "filter", "where_document", "include_metadata", "include_vectors", "include_documents", "buckets")
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    DOC_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    WHERE_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_METADATA_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[KeywordTerms]
    doc_count: int
    total_tokens: int
    k: int
    filter: _common_pb2.Filter
    where_document: _common_pb2.DocumentFilter
    include_metadata: bool
    include_vectors: bool
    include_documents: bool
    buckets: bytes
    def __init__(self, queries: _Optional[_Iterable[_Union[KeywordTerms, _Mapping]]] = ..., doc_count: _Optional[int] = ..., total_tokens: _Optional[int] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., where_document: _Optional[_Union[_common_pb2.DocumentFilter, _Mapping]] = ..., include_metadata: _Optional[bool] = ..., include_vectors: _Optional[bool] = ..., include_documents: _Optional[bool] = ..., buckets: _Optional[bytes] = ...) -> None: ...

class EpochSetRequest(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    def __init__(self, epoch: _Optional[int] = ...) -> None: ...

class EpochSetResponse(_message.Message):
    __slots__ = ("previous",)
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    previous: int
    def __init__(self, previous: _Optional[int] = ...) -> None: ...

class ShardStageRequest(_message.Message):
    __slots__ = ("seq", "ids", "vectors", "metadata_json", "delete_ids", "delete_filter", "documents", "update", "expires_at")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    DELETE_IDS_FIELD_NUMBER: _ClassVar[int]
    DELETE_FILTER_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    ids: _containers.RepeatedScalarFieldContainer[str]
    vectors: _common_pb2.Vectors
    metadata_json: _containers.RepeatedScalarFieldContainer[str]
    delete_ids: _containers.RepeatedScalarFieldContainer[str]
    delete_filter: _common_pb2.Filter
    documents: _containers.RepeatedScalarFieldContainer[str]
    update: ShardUpdateRequest
    expires_at: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, seq: _Optional[int] = ..., ids: _Optional[_Iterable[str]] = ..., vectors: _Optional[_Union[_common_pb2.Vectors, _Mapping]] = ..., metadata_json: _Optional[_Iterable[str]] = ..., delete_ids: _Optional[_Iterable[str]] = ..., delete_filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., documents: _Optional[_Iterable[str]] = ..., update: _Optional[_Union[ShardUpdateRequest, _Mapping]] = ..., expires_at: _Optional[_Iterable[float]] = ...) -> None: ...

class ShardStageResponse(_message.Message):
    __slots__ = ("staged_bytes",)
    STAGED_BYTES_FIELD_NUMBER: _ClassVar[int]
    staged_bytes: int
    def __init__(self, staged_bytes: _Optional[int] = ...) -> None: ...

class ShardResolveRequest(_message.Message):
    __slots__ = ("seq", "commit", "owned")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    OWNED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    commit: bool
    owned: bytes
    def __init__(self, seq: _Optional[int] = ..., commit: _Optional[bool] = ..., owned: _Optional[bytes] = ...) -> None: ...

class ShardSnapshotRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardSnapshotChunk(_message.Message):
    __slots__ = ("manifest_json", "data")
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    manifest_json: str
    data: bytes
    def __init__(self, manifest_json: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class ShardUpdateRequest(_message.Message):
    __slots__ = ("ids", "metadata_json", "replace_metadata", "documents", "upsert_missing", "vectors", "max_metadata_bytes", "reembed", "expires_at", "insert_expires_at", "accepted_at")
    IDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    REPLACE_METADATA_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    UPSERT_MISSING_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    MAX_METADATA_BYTES_FIELD_NUMBER: _ClassVar[int]
    REEMBED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    INSERT_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AT_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    metadata_json: _containers.RepeatedScalarFieldContainer[str]
    replace_metadata: bool
    documents: _containers.RepeatedScalarFieldContainer[str]
    upsert_missing: bool
    vectors: _common_pb2.Vectors
    max_metadata_bytes: int
    reembed: bool
    expires_at: _containers.RepeatedScalarFieldContainer[float]
    insert_expires_at: float
    accepted_at: float
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., metadata_json: _Optional[_Iterable[str]] = ..., replace_metadata: _Optional[bool] = ..., documents: _Optional[_Iterable[str]] = ..., upsert_missing: _Optional[bool] = ..., vectors: _Optional[_Union[_common_pb2.Vectors, _Mapping]] = ..., max_metadata_bytes: _Optional[int] = ..., reembed: _Optional[bool] = ..., expires_at: _Optional[_Iterable[float]] = ..., insert_expires_at: _Optional[float] = ..., accepted_at: _Optional[float] = ...) -> None: ...

class ShardWriteResponse(_message.Message):
    __slots__ = ("applied", "affected", "applied_seq", "missing_ids", "inserted")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    MISSING_IDS_FIELD_NUMBER: _ClassVar[int]
    INSERTED_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    affected: int
    applied_seq: int
    missing_ids: _containers.RepeatedScalarFieldContainer[str]
    inserted: int
    def __init__(self, applied: _Optional[bool] = ..., affected: _Optional[int] = ..., applied_seq: _Optional[int] = ..., missing_ids: _Optional[_Iterable[str]] = ..., inserted: _Optional[int] = ...) -> None: ...

class ShardGetRequest(_message.Message):
    __slots__ = ("ids", "include")
    IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    include: _common_pb2.Include
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., include: _Optional[_Union[_common_pb2.Include, _Mapping]] = ...) -> None: ...

class ShardGetResponse(_message.Message):
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

class ShardCountRequest(_message.Message):
    __slots__ = ("filter", "where_document", "buckets")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    WHERE_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    filter: _common_pb2.Filter
    where_document: _common_pb2.DocumentFilter
    buckets: bytes
    def __init__(self, filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., where_document: _Optional[_Union[_common_pb2.DocumentFilter, _Mapping]] = ..., buckets: _Optional[bytes] = ...) -> None: ...

class ShardCountResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class ShardSearchRequest(_message.Message):
    __slots__ = ("queries", "k", "filter", "ef", "exact", "min_score", "max_distance", "include_metadata", "include_vectors", "include_documents", "where_document", "buckets")
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    EF_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    MAX_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_METADATA_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    WHERE_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    queries: _common_pb2.Vectors
    k: int
    filter: _common_pb2.Filter
    ef: int
    exact: bool
    min_score: float
    max_distance: float
    include_metadata: bool
    include_vectors: bool
    include_documents: bool
    where_document: _common_pb2.DocumentFilter
    buckets: bytes
    def __init__(self, queries: _Optional[_Union[_common_pb2.Vectors, _Mapping]] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., ef: _Optional[int] = ..., exact: _Optional[bool] = ..., min_score: _Optional[float] = ..., max_distance: _Optional[float] = ..., include_metadata: _Optional[bool] = ..., include_vectors: _Optional[bool] = ..., include_documents: _Optional[bool] = ..., where_document: _Optional[_Union[_common_pb2.DocumentFilter, _Mapping]] = ..., buckets: _Optional[bytes] = ...) -> None: ...

class ShardSearchResponse(_message.Message):
    __slots__ = ("k", "ids", "scores", "metadata_json", "vectors", "documents")
    K_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    k: int
    ids: _containers.RepeatedScalarFieldContainer[str]
    scores: bytes
    metadata_json: _containers.RepeatedScalarFieldContainer[str]
    vectors: bytes
    documents: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, k: _Optional[int] = ..., ids: _Optional[_Iterable[str]] = ..., scores: _Optional[bytes] = ..., metadata_json: _Optional[_Iterable[str]] = ..., vectors: _Optional[bytes] = ..., documents: _Optional[_Iterable[str]] = ...) -> None: ...

class ShardStreamRequest(_message.Message):
    __slots__ = ("id", "search", "timeout_s", "epoch")
    ID_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    id: int
    search: bytes
    timeout_s: float
    epoch: int
    def __init__(self, id: _Optional[int] = ..., search: _Optional[bytes] = ..., timeout_s: _Optional[float] = ..., epoch: _Optional[int] = ...) -> None: ...

class ShardStreamResponse(_message.Message):
    __slots__ = ("id", "result", "code", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: int
    result: ShardSearchResponse
    code: int
    message: str
    def __init__(self, id: _Optional[int] = ..., result: _Optional[_Union[ShardSearchResponse, _Mapping]] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ShardInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardInfoResponse(_message.Message):
    __slots__ = ("count", "applied_seq", "checkpoint_seq", "pid", "node_id", "info_json", "staged_seqs")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_SEQ_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INFO_JSON_FIELD_NUMBER: _ClassVar[int]
    STAGED_SEQS_FIELD_NUMBER: _ClassVar[int]
    count: int
    applied_seq: int
    checkpoint_seq: int
    pid: int
    node_id: str
    info_json: str
    staged_seqs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, count: _Optional[int] = ..., applied_seq: _Optional[int] = ..., checkpoint_seq: _Optional[int] = ..., pid: _Optional[int] = ..., node_id: _Optional[str] = ..., info_json: _Optional[str] = ..., staged_seqs: _Optional[_Iterable[int]] = ...) -> None: ...

class ShardChangesRequest(_message.Message):
    __slots__ = ("after_seq", "limit")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    limit: int
    def __init__(self, after_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class RowChange(_message.Message):
    __slots__ = ("id", "seq", "deleted", "metadata_json", "document", "expires_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    seq: int
    deleted: bool
    metadata_json: str
    document: str
    expires_at: float
    def __init__(self, id: _Optional[str] = ..., seq: _Optional[int] = ..., deleted: _Optional[bool] = ..., metadata_json: _Optional[str] = ..., document: _Optional[str] = ..., expires_at: _Optional[float] = ...) -> None: ...

class ShardChangesResponse(_message.Message):
    __slots__ = ("changes", "vectors", "applied_seq")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[RowChange]
    vectors: _common_pb2.Vectors
    applied_seq: int
    def __init__(self, changes: _Optional[_Iterable[_Union[RowChange, _Mapping]]] = ..., vectors: _Optional[_Union[_common_pb2.Vectors, _Mapping]] = ..., applied_seq: _Optional[int] = ...) -> None: ...

class ShardScrollRequest(_message.Message):
    __slots__ = ("after_bucket", "after_id", "end_bucket", "limit", "filter", "include", "max_bytes", "where_document")
    AFTER_BUCKET_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    END_BUCKET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    WHERE_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    after_bucket: int
    after_id: str
    end_bucket: int
    limit: int
    filter: _common_pb2.Filter
    include: _common_pb2.Include
    max_bytes: int
    where_document: _common_pb2.DocumentFilter
    def __init__(self, after_bucket: _Optional[int] = ..., after_id: _Optional[str] = ..., end_bucket: _Optional[int] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., include: _Optional[_Union[_common_pb2.Include, _Mapping]] = ..., max_bytes: _Optional[int] = ..., where_document: _Optional[_Union[_common_pb2.DocumentFilter, _Mapping]] = ...) -> None: ...

class ShardScrollResponse(_message.Message):
    __slots__ = ("ids", "metadata_json", "vectors", "last_bucket", "last_id", "done", "documents", "expires_at")
    IDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    LAST_BUCKET_FIELD_NUMBER: _ClassVar[int]
    LAST_ID_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    metadata_json: _containers.RepeatedScalarFieldContainer[str]
    vectors: _common_pb2.Vectors
    last_bucket: int
    last_id: str
    done: bool
    documents: _containers.RepeatedScalarFieldContainer[str]
    expires_at: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., metadata_json: _Optional[_Iterable[str]] = ..., vectors: _Optional[_Union[_common_pb2.Vectors, _Mapping]] = ..., last_bucket: _Optional[int] = ..., last_id: _Optional[str] = ..., done: _Optional[bool] = ..., documents: _Optional[_Iterable[str]] = ..., expires_at: _Optional[_Iterable[float]] = ...) -> None: ...

class ShardFacetRequest(_message.Message):
    __slots__ = ("field", "filter", "where_document", "buckets")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    WHERE_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    field: str
    filter: _common_pb2.Filter
    where_document: _common_pb2.DocumentFilter
    buckets: bytes
    def __init__(self, field: _Optional[str] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., where_document: _Optional[_Union[_common_pb2.DocumentFilter, _Mapping]] = ..., buckets: _Optional[bytes] = ...) -> None: ...

class ShardFacetResponse(_message.Message):
    __slots__ = ("values", "field_known")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    FIELD_KNOWN_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[_common_pb2.FacetCount]
    field_known: bool
    def __init__(self, values: _Optional[_Iterable[_Union[_common_pb2.FacetCount, _Mapping]]] = ..., field_known: _Optional[bool] = ...) -> None: ...

class ShardGroupSearchRequest(_message.Message):
    __slots__ = ("search", "field", "groups", "group_size", "values_json")
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    VALUES_JSON_FIELD_NUMBER: _ClassVar[int]
    search: ShardSearchRequest
    field: str
    groups: int
    group_size: int
    values_json: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, search: _Optional[_Union[ShardSearchRequest, _Mapping]] = ..., field: _Optional[str] = ..., groups: _Optional[int] = ..., group_size: _Optional[int] = ..., values_json: _Optional[_Iterable[str]] = ...) -> None: ...

class ShardGroupSearchResponse(_message.Message):
    __slots__ = ("hits", "group_keys", "field_known", "bounds")
    HITS_FIELD_NUMBER: _ClassVar[int]
    GROUP_KEYS_FIELD_NUMBER: _ClassVar[int]
    FIELD_KNOWN_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    hits: ShardSearchResponse
    group_keys: _containers.RepeatedScalarFieldContainer[str]
    field_known: bool
    bounds: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, hits: _Optional[_Union[ShardSearchResponse, _Mapping]] = ..., group_keys: _Optional[_Iterable[str]] = ..., field_known: _Optional[bool] = ..., bounds: _Optional[_Iterable[float]] = ...) -> None: ...
