"""The declared request bodies of the platform service's JSON endpoints.

Each model states the shape of one body and its limits: types (strict: a list or an
object where text is expected is refused, and ``true`` is not a number), lengths of
text and lists, number ranges, finite numbers only, no unknown keys. The domain
modules still decide what a well-shaped request means (a dataset the policy has, a
column in the grant, a transition the workflow allows); a model only makes sure that
what reaches them is the shape they expect, within limits, before anything is
written or debited. :mod:`.openapi` publishes these models as the API's schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, ClassVar, Final, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    TypeAdapter,
)

from ..dp import query as dpquery
from ..egress import requests as egress
from ..ingress import imports as ingress
from ..jobs import queue as jobs
from ..workflow import applications

T = TypeVar("T")

#: Largest body of an ordinary request (a query, an application, a decision).
SMALL_BODY: Final[int] = 64 * 1024
#: Largest body of an export request: its snapshot, with room for purpose and title.
EGRESS_BODY: Final[int] = egress.MAX_SNAPSHOT_BYTES + SMALL_BODY


def Text(max_length: int, *, min_length: int = 0) -> Any:
    """Text of at most ``max_length`` characters (valid Unicode: the reader checks)."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length)]


Name = Text(128, min_length=1)
"""A dataset, column or output name."""
RequestId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
"""The ID of a request, application, registration or release."""
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
"""A SHA-256 digest in lower-case hex."""
Number = Annotated[float, Field(ge=-1e15, le=1e15)]
"""A finite number of a sensible size (JSON integers are accepted)."""
Comment = Text(4000)
"""A reviewer's or applicant's comment."""


class Body(BaseModel):
    """A request body: strict types, finite numbers, no keys beyond those declared."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


# ================================================================== differential privacy

Scalar = Text(1000) | int | float
"""A filter value; its column's type is checked against the policy."""


class FilterBody(Body):
    """Keep rows where ``column op value`` holds."""

    column: Name
    op: Literal[tuple(sorted(dpquery.FILTER_OPS))]  # type: ignore[valid-type]
    value: Scalar | Annotated[list[Scalar], Field(max_length=dpquery.MAX_IN_VALUES)] | None = None


class BinsBody(Body):
    """A histogram key: a numeric column cut at public edges."""

    column: Name
    bins: Annotated[list[Number], Field(min_length=1, max_length=dpquery.MAX_BIN_EDGES)]


GroupKeyBody = Name | BinsBody


class StatisticBody(Body):
    """One released number per group."""

    fn: Literal[tuple(dpquery.STATISTICS)]  # type: ignore[valid-type]
    column: Name | None = None
    q: Annotated[float, Field(gt=0, lt=1)] | None = None


Epsilon = Annotated[float, Field(gt=0, le=1000)]
"""ε of one request (the policy's per-query cap is checked by the DP service)."""
Filters = Annotated[list[FilterBody], Field(max_length=dpquery.MAX_FILTERS)]


class JoinBody(Body):
    """A DP query's fusion with the tenant's import (:class:`..dp.query.Join`)."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)

    import_: RequestId = Field(alias="import")
    on: Name
    import_column: Name


class DpQueryBody(Body):
    """``POST api/dp/query``: statistics of a granted dataset (:mod:`..dp.query`)."""

    dataset: Name
    epsilon: Epsilon | None = None
    alpha: Annotated[float, Field(gt=0, lt=0.5)] | None = None
    filters: Filters | None = None
    group_by: GroupKeyBody | Annotated[list[GroupKeyBody], Field(max_length=10)] | None = None
    statistics: Annotated[
        dict[Name, StatisticBody], Field(min_length=1, max_length=dpquery.MAX_STATISTICS)
    ]
    dry_run: bool = False
    join: JoinBody | None = None


class DpModelBody(Body):
    """``POST api/dp/models``: a diffprivlib model fit (:mod:`..dp.learn`)."""

    dataset: Name
    model: Literal["logistic_regression", "linear_regression", "gaussian_nb", "kmeans"]
    features: Annotated[list[Name], Field(min_length=1, max_length=20)]
    label: Name | None = None
    epsilon: Epsilon | None = None
    filters: Filters | None = None
    n_clusters: Annotated[int, Field(ge=2, le=20)] | None = None
    dry_run: bool = False


# ======================================================================= egress

MimeType = Annotated[str, StringConstraints(pattern=r"^[a-z]+/[A-Za-z0-9.+_-]+$", max_length=255)]
MultilineText = str | list[str]
"""Notebook text: one string, or a list of lines."""


def _plain_unless_json(bundle: dict[str, JsonValue]) -> dict[str, JsonValue]:
    """A MIME bundle: JSON types hold any JSON, every other type text (nbformat 4)."""
    for mime, value in bundle.items():
        json_type = mime == "application/json" or mime.endswith("+json")
        text = isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(line, str) for line in value)
        )
        if not json_type and not text:
            raise ValueError(f"{mime} must hold text or a list of lines")
    return bundle


MimeBundle = Annotated[dict[MimeType, JsonValue], AfterValidator(_plain_unless_json)]


class StreamOutput(Body):
    """Text a cell printed."""

    output_type: Literal["stream"]
    name: Literal["stdout", "stderr"]
    text: MultilineText


class DisplayOutput(Body):
    """Rich output a cell displayed."""

    output_type: Literal["display_data"]
    data: MimeBundle
    metadata: dict[str, JsonValue] = {}
    transient: dict[str, JsonValue] = {}
    """A live display's ``display_id`` (the kernel client sends displays as they came)."""


class ResultOutput(Body):
    """A cell's value."""

    output_type: Literal["execute_result"]
    execution_count: Annotated[int, Field(ge=0)] | None = None
    data: MimeBundle
    metadata: dict[str, JsonValue] = {}
    transient: dict[str, JsonValue] = {}


class ErrorOutput(Body):
    """An exception a cell raised."""

    output_type: Literal["error"]
    ename: str
    evalue: str
    traceback: list[str] = []


CellOutput = Annotated[
    StreamOutput | DisplayOutput | ResultOutput | ErrorOutput,
    Field(discriminator="output_type"),
]


class CellBody(Body):
    """One cell taken out: its index in the notebook, execution count, source and outputs."""

    index: Annotated[int, Field(ge=0, le=100_000)]
    execution_count: Annotated[int, Field(ge=0, le=2**31)] | None = None
    """JupyterLab's ``[n]`` of the cell, if it ran: how every page names the cell."""
    source: str = ""
    outputs: Annotated[list[CellOutput], Field(min_length=1, max_length=1000)]


class CellsContent(Body):
    """Chosen cell outputs of a saved notebook."""

    kind: Literal["cells"]
    notebook: Text(1024, min_length=1)
    cells: Annotated[list[CellBody], Field(min_length=1, max_length=egress.MAX_CELLS)]


class FileContent(Body):
    """One file of the work folder, in base64."""

    kind: Literal["file"]
    path: Text(1024, min_length=1)
    data_b64: Annotated[
        str,
        StringConstraints(pattern=r"^[A-Za-z0-9+/]*={0,2}$", max_length=egress.MAX_SNAPSHOT_BYTES),
    ]


class DashboardContent(Body):
    """A whole notebook to publish as a dashboard, and the releases it reads."""

    kind: Literal["dashboard"]
    notebook: Text(1024, min_length=1)
    document: dict[str, JsonValue]
    releases: Annotated[list[RequestId], Field(max_length=egress.MAX_DASHBOARD_RELEASES)] = []


class _Described(Body):
    purpose: Text(4000, min_length=1)
    title: Text(200) = ""


class CellsRequest(CellsContent, _Described):
    """``POST api/egress/requests`` for cell outputs."""


class FileRequest(FileContent, _Described):
    """``POST api/egress/requests`` for a file."""


class DashboardRequest(DashboardContent, _Described):
    """``POST api/egress/requests`` for a dashboard."""


EgressContent = Annotated[
    CellsContent | FileContent | DashboardContent, Field(discriminator="kind")
]
NewEgressRequest = Annotated[
    CellsRequest | FileRequest | DashboardRequest, Field(discriminator="kind")
]


class EgressDecisionBody(Body):
    """``POST api/egress/requests/<id>/decision``: a reviewer's decision.

    ``snapshot_sha256`` is the SHA-256 of the snapshot the reviewer looked at (the
    request's ``snapshot_sha256``); the decision is refused (409) if it changed since.
    """

    action: Literal[egress.DECISIONS]  # type: ignore[valid-type]
    comment: Comment = ""
    snapshot_sha256: Sha256


class BlockedReport(Body):
    """``POST api/egress/blocked``: a download a single-user server refused."""

    route: Text(64, min_length=1)
    reason: Text(1024) = ""
    method: Text(16) = ""
    path: Text(1024) = ""
    query: Text(512) = ""


#: The name of a merchant's import (its folder and file under ``/data/imports``).
ImportName = Annotated[str, StringConstraints(pattern=ingress.NAME_PATTERN)]


class JobSubmission(Body):
    """``POST api/jobs``: code of the work folder to run sealed on production inputs.

    ``files`` maps relative paths to base64 content and must hold ``entry`` (a ``.ipynb``
    run with papermill, or a ``.py`` run with Python); ``outputs`` are glob patterns,
    relative to the job's work folder, of the files to take out for review;
    ``imports`` names the tenant's approved imports the job reads (``/data/imports``).
    """

    entry: Text(256, min_length=1)
    files: Annotated[
        dict[
            Text(256, min_length=1),
            Annotated[
                str,
                StringConstraints(
                    pattern=r"^[A-Za-z0-9+/]*={0,2}$", max_length=jobs.MAX_CODE_BYTES
                ),
            ],
        ],
        Field(min_length=1, max_length=jobs.MAX_FILES),
    ]
    parameters: Annotated[dict[Text(64, min_length=1), JsonValue], Field(max_length=100)] = {}
    outputs: Annotated[list[Text(256, min_length=1)], Field(max_length=jobs.MAX_OUTPUTS)] = []
    imports: Annotated[list[ImportName], Field(max_length=ingress.MAX_JOB_IMPORTS)] = []
    purpose: Text(4000, min_length=1)


class EmptyBody(Body):
    """A body with nothing in it (``{}``, or none at all)."""


# ================================================================ workflow

PERSON_ACTIONS: Final[tuple[str, ...]] = tuple(
    a for a, who in applications.ACTORS.items() if who != "platform"
)


class DatasetAsk(Body):
    """One dataset an application asks for."""

    dataset: Name
    fields: Annotated[list[Name], Field(max_length=500)] | None = None
    epsilon: Epsilon | None = None


class ApplicationBody(Body):
    """``POST api/applications``: a scenario application (:mod:`..workflow.applications`)."""

    scenario: Text(200)
    purpose: Text(4000)
    method: Text(4000)
    security_measures: Text(4000)
    nature: Literal[applications.NATURES]  # type: ignore[valid-type]
    period_start: Annotated[date, Field(strict=False)]
    period_end: Annotated[date, Field(strict=False)]
    datasets: Annotated[list[DatasetAsk], Field(min_length=1, max_length=50)]


class ApplicationDecisionBody(Body):
    """``POST api/applications/<id>/decision``."""

    action: Literal[PERSON_ACTIONS]  # type: ignore[valid-type]
    comment: Comment = ""
    department: Text(200) = ""


class UserAsk(Body):
    """One account a registration asks for."""

    username: Text(63)
    real_name: Text(100)


class RegistrationBody(Body):
    """``POST api/onboarding/registrations``: a merchant's registration."""

    org_name: Text(200)
    uscc: Text(18)
    contact_name: Text(100)
    contact_phone: Text(20)
    tenant: Text(40)
    agreement_signed: bool
    users: Annotated[list[UserAsk], Field(min_length=1, max_length=50)]


class RegistrationDecisionBody(Body):
    """``POST api/onboarding/registrations/<id>/decision``."""

    action: Literal["approve", "reject"]
    reason: Comment = ""


# ==================================================================== data in

#: Largest body of an import request: a 64 MiB file in base64, and its description.
IMPORT_BODY: Final[int] = 64 * 1024 * 1024 * 4 // 3 + SMALL_BODY


class WithdrawBody(Body):
    """``POST api/supply/<dataset>/<version>/withdraw``."""

    reason: Text(2000, min_length=1)


class ImportField(Body):
    """What one column of an import is: a personal identifier, sensitive, or neither."""

    identifier: bool = False
    sensitive: bool = False


class ImportRequestBody(Body):
    """``POST api/imports``: a merchant's own data, with its lawful source (R21)."""

    name: ImportName
    filename: Text(200, min_length=1)
    content_base64: Annotated[str, StringConstraints(min_length=1, max_length=IMPORT_BODY)]
    lawful_source: Text(4000, min_length=1)
    authorisation: Text(4000, min_length=1)
    scenario: Text(1000, min_length=1)
    fields: Annotated[dict[Name, ImportField], Field(min_length=1, max_length=500)]


class ImportDecisionBody(Body):
    """``POST api/imports/<id>/decision``."""

    action: Literal["approve", "reject"]
    reason: Comment = ""


# ============================================================== query strings


class AuditQuery(Body):
    """``GET api/audit/events``: which events to read."""

    model_config = ConfigDict(strict=False, extra="ignore")

    after: Annotated[int, Field(ge=0, le=2**53)] = 0
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    action: Text(100) = ""
    actor: Text(100) = ""
    tenant: Text(100) = ""


class VolumesQuery(Body):
    """``GET api/egress/volumes``: how many past days of output volumes to rank."""

    model_config = ConfigDict(strict=False, extra="ignore")

    days: Annotated[int, Field(ge=1, le=90)] = 7


class StatementQuery(Body):
    """``GET fees``, ``fees/statement``, ``api/fees/statement[.csv]``: whose month.

    ``tenant`` defaults to the merchant's own (administrators name one); ``month`` to
    the current month (UTC).
    """

    model_config = ConfigDict(strict=False, extra="ignore")

    tenant: Annotated[str, Field(pattern=r"^([a-z][a-z0-9-]{1,38}[a-z0-9])?$")] = ""
    month: Annotated[str, Field(pattern=r"^(\d{4}-(0[1-9]|1[0-2]))?$")] = ""


class ReportQuery(Body):
    """``GET disclosure/report``: the year of the annual operation report."""

    model_config = ConfigDict(strict=False, extra="ignore")

    year: Annotated[int, Field(ge=2000, le=2100)] | None = None


# ================================================================= declarations


@dataclass(frozen=True)
class Declared(Generic[T]):
    """A declared body: its name in the API document, its model, its largest size."""

    name: str
    model: Any
    max_bytes: int = SMALL_BODY
    #: Whether no body at all means ``{}``.
    may_be_empty: bool = False

    adapters: ClassVar[dict[str, TypeAdapter[Any]]] = {}

    @property
    def adapter(self) -> TypeAdapter[T]:
        """The model's validator (made once)."""
        if self.name not in self.adapters:
            self.adapters[self.name] = TypeAdapter(self.model)
        return self.adapters[self.name]


DP_QUERY: Final = Declared[DpQueryBody]("DpQuery", DpQueryBody)
DP_MODEL: Final = Declared[DpModelBody]("DpModel", DpModelBody)
NEW_EGRESS_REQUEST: Final = Declared[Any]("NewEgressRequest", NewEgressRequest, EGRESS_BODY)
EGRESS_CONTENT: Final = Declared[Any]("EgressContent", EgressContent, EGRESS_BODY)
EGRESS_DECISION: Final = Declared[EgressDecisionBody]("EgressDecision", EgressDecisionBody)
BLOCKED: Final = Declared[BlockedReport]("BlockedDownload", BlockedReport)
EMPTY: Final = Declared[EmptyBody]("Empty", EmptyBody, may_be_empty=True)
JOB_SUBMISSION: Final = Declared[JobSubmission](
    "JobSubmission", JobSubmission, jobs.MAX_CODE_BYTES + SMALL_BODY
)
APPLICATION: Final = Declared[ApplicationBody]("Application", ApplicationBody)
APPLICATION_DECISION: Final = Declared[ApplicationDecisionBody](
    "ApplicationDecision", ApplicationDecisionBody
)
WITHDRAW_VERSION: Final = Declared[WithdrawBody]("WithdrawVersion", WithdrawBody)
IMPORT_REQUEST: Final = Declared[ImportRequestBody]("ImportRequest", ImportRequestBody, IMPORT_BODY)
IMPORT_DECISION: Final = Declared[ImportDecisionBody]("ImportDecision", ImportDecisionBody)
REGISTRATION: Final = Declared[RegistrationBody]("Registration", RegistrationBody)
REGISTRATION_DECISION: Final = Declared[RegistrationDecisionBody](
    "RegistrationDecision", RegistrationDecisionBody
)
