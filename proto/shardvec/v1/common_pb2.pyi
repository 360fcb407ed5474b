from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Metric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_UNSPECIFIED: _ClassVar[Metric]
    COSINE: _ClassVar[Metric]
    DOT: _ClassVar[Metric]
    EUCLIDEAN: _ClassVar[Metric]
METRIC_UNSPECIFIED: Metric
COSINE: Metric
DOT: Metric
EUCLIDEAN: Metric

class Vectors(_message.Message):
    __slots__ = ("dim", "packed", "values")
    DIM_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    dim: int
    packed: bytes
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, dim: _Optional[int] = ..., packed: _Optional[bytes] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("condition", "all", "any", "negate")
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    ANY_FIELD_NUMBER: _ClassVar[int]
    NEGATE_FIELD_NUMBER: _ClassVar[int]
    condition: Condition
    all: FilterList
    any: FilterList
    negate: Filter
    def __init__(self, condition: _Optional[_Union[Condition, _Mapping]] = ..., all: _Optional[_Union[FilterList, _Mapping]] = ..., any: _Optional[_Union[FilterList, _Mapping]] = ..., negate: _Optional[_Union[Filter, _Mapping]] = ...) -> None: ...

class FilterList(_message.Message):
    __slots__ = ("children",)
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    children: _containers.RepeatedCompositeFieldContainer[Filter]
    def __init__(self, children: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("field", "op", "value_json")
    class Op(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OP_UNSPECIFIED: _ClassVar[Condition.Op]
        EQ: _ClassVar[Condition.Op]
        NE: _ClassVar[Condition.Op]
        GT: _ClassVar[Condition.Op]
        GTE: _ClassVar[Condition.Op]
        LT: _ClassVar[Condition.Op]
        LTE: _ClassVar[Condition.Op]
        IN: _ClassVar[Condition.Op]
        NIN: _ClassVar[Condition.Op]
        EXISTS: _ClassVar[Condition.Op]
        CONTAINS: _ClassVar[Condition.Op]
    OP_UNSPECIFIED: Condition.Op
    EQ: Condition.Op
    NE: Condition.Op
    GT: Condition.Op
    GTE: Condition.Op
    LT: Condition.Op
    LTE: Condition.Op
    IN: Condition.Op
    NIN: Condition.Op
    EXISTS: Condition.Op
    CONTAINS: Condition.Op
    FIELD_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    field: str
    op: Condition.Op
    value_json: str
    def __init__(self, field: _Optional[str] = ..., op: _Optional[_Union[Condition.Op, str]] = ..., value_json: _Optional[str] = ...) -> None: ...

class IndexParams(_message.Message):
    __slots__ = ("m", "ef_construction", "ef")
    M_FIELD_NUMBER: _ClassVar[int]
    EF_CONSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    EF_FIELD_NUMBER: _ClassVar[int]
    m: int
    ef_construction: int
    ef: int
    def __init__(self, m: _Optional[int] = ..., ef_construction: _Optional[int] = ..., ef: _Optional[int] = ...) -> None: ...

class Include(_message.Message):
    __slots__ = ("metadata", "vectors", "documents")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    metadata: bool
    vectors: bool
    documents: bool
    def __init__(self, metadata: _Optional[bool] = ..., vectors: _Optional[bool] = ..., documents: _Optional[bool] = ...) -> None: ...

class DocumentFilter(_message.Message):
    __slots__ = ("contains", "not_contains", "all", "any")
    CONTAINS_FIELD_NUMBER: _ClassVar[int]
    NOT_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    ANY_FIELD_NUMBER: _ClassVar[int]
    contains: str
    not_contains: str
    all: DocumentFilterList
    any: DocumentFilterList
    def __init__(self, contains: _Optional[str] = ..., not_contains: _Optional[str] = ..., all: _Optional[_Union[DocumentFilterList, _Mapping]] = ..., any: _Optional[_Union[DocumentFilterList, _Mapping]] = ...) -> None: ...

class DocumentFilterList(_message.Message):
    __slots__ = ("children",)
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    children: _containers.RepeatedCompositeFieldContainer[DocumentFilter]
    def __init__(self, children: _Optional[_Iterable[_Union[DocumentFilter, _Mapping]]] = ...) -> None: ...

class FacetCount(_message.Message):
    __slots__ = ("string_value", "number_value", "bool_value", "count")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    number_value: float
    bool_value: bool
    count: int
    def __init__(self, string_value: _Optional[str] = ..., number_value: _Optional[float] = ..., bool_value: _Optional[bool] = ..., count: _Optional[int] = ...) -> None: ...
