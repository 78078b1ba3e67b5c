"""Table definitions of the metadata store (SQLAlchemy Core).

Migrations in ``migrations/versions`` create and change these tables; this
module is what the code queries against. Times are integer milliseconds since
the epoch (UTC) except the audit time, kept as the exact ISO-8601 text that
was hashed.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

ID = sa.String(32)  # uuid4 hex
KEY = sa.String(250)

experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(256), nullable=False, unique=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), nullable=False, index=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("start_time", sa.BigInteger, nullable=False),
    sa.Column("end_time", sa.BigInteger),
    sa.Column("user", sa.String(256), nullable=False),
    sa.Column("source_commit", sa.String(64)),
    sa.Column("source_dirty", sa.Boolean),
    sa.Column("entry_point", sa.String(1024)),
    sa.Column("parent_run_id", ID, sa.ForeignKey("runs.id"), index=True),
)

params = sa.Table(
    "params",
    metadata,
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("key", KEY, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("key", KEY, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Logged values in packed chunks, one row per (run, key, flush): see
# keel/service/metric_chunks.py. Arrays are little-endian int64/float64.
metric_chunks = sa.Table(
    "metric_chunks",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("key", KEY, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("first_step", sa.BigInteger, nullable=False),
    sa.Column("last_step", sa.BigInteger, nullable=False),
    sa.Column("steps", sa.LargeBinary, nullable=False),
    sa.Column("vals", sa.LargeBinary, nullable=False),
    sa.Column("timestamps", sa.LargeBinary, nullable=False),
    sa.Index("ix_metric_chunks_run_id_key", "run_id", "key"),
)

# The value at the highest step (then latest time) per run and key: what
# search filters and sorts on, kept in step with metric_chunks by every flush.
# SQLite stores NaN as NULL, so NaN is value NULL + is_nan.
latest_metrics = sa.Table(
    "latest_metrics",
    metadata,
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("key", KEY, primary_key=True),
    sa.Column("value", sa.Float(precision=53)),
    sa.Column("is_nan", sa.Boolean, nullable=False),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Index("ix_latest_metrics_key_value", "key", "value"),
)

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("path", sa.String(1024), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("digest", sa.String(80), nullable=False),
    sa.Column("source", sa.String(2048)),
    sa.Column("schema", sa.JSON, nullable=False),
    sa.Column("num_rows", sa.BigInteger, nullable=False),
    sa.Column("profile", sa.JSON, nullable=False),
    sa.Column("data_sha256", sa.String(64)),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("name", "digest"),
)

run_inputs = sa.Table(
    "run_inputs",
    metadata,
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("dataset_id", ID, sa.ForeignKey("datasets.id"), primary_key=True),
    sa.Column("context", sa.String(64), primary_key=True),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False),
    sa.Column("time", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("object_type", sa.String(64), nullable=False),
    sa.Column("object_id", sa.String(256), nullable=False),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_events_object", "object_type", "object_id"),
)

# One row: the chain's tip. Writers lock it (SELECT ... FOR UPDATE) so that
# concurrent transactions append to the chain one after another.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)


registered_models = sa.Table(
    "registered_models",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("description", sa.Text),
    sa.Column("owner", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# Versions are numbered 1, 2, ... per model; the number is taken inside the
# inserting transaction (a racing inserter hits the primary key and retries).
model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("name", sa.String(256), sa.ForeignKey("registered_models.name"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("artifact_path", sa.String(1024), nullable=False),
    sa.Column("manifest_sha256", sa.String(64), nullable=False),
    sa.Column("format", sa.String(64), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

model_aliases = sa.Table(
    "model_aliases",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("alias", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.ForeignKeyConstraint(["name", "version"], ["model_versions.name", "model_versions.version"]),
)

registered_model_tags = sa.Table(
    "registered_model_tags",
    metadata,
    sa.Column("name", sa.String(256), sa.ForeignKey("registered_models.name"), primary_key=True),
    sa.Column("key", KEY, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Governance (migration 0003). Roles are ordered viewer < editor < approver < admin
# (keel/governance/roles.py). While this table is empty the store is "open":
# every actor may do everything except approve their own request.
users = sa.Table(
    "users",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# Only the sha256 of a token is kept; the token itself is shown once.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("user", sa.String(256), sa.ForeignKey("users.name"), nullable=False, index=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger),
    sa.Column("revoked_at", sa.BigInteger),
    sa.Column("revoked_by", sa.String(256)),
)

# A version asking for an alias. ``checks`` holds the policy results recorded
# when it was filed (and again when it was decided, in ``decision_checks``).
promotion_requests = sa.Table(
    "promotion_requests",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("alias", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending / approved / rejected / cancelled
    sa.Column("requester", sa.String(256), nullable=False),
    sa.Column("requested_at", sa.BigInteger, nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("checks", sa.JSON, nullable=False),
    sa.Column("checks_passed", sa.Boolean, nullable=False),
    sa.Column("decided_by", sa.String(256)),
    sa.Column("decided_at", sa.BigInteger),
    sa.Column("reason", sa.Text),
    sa.Column("decision_checks", sa.JSON),
    sa.Column("previous_version", sa.Integer),
    sa.ForeignKeyConstraint(["name", "version"], ["model_versions.name", "model_versions.version"]),
    sa.Index("ix_promotion_requests_name_status", "name", "status"),
)

# User-written card fields (purpose, intended use, limitations, ...): version 0
# holds the model's own, a version's row overrides field by field.
model_cards = sa.Table(
    "model_cards",
    metadata,
    sa.Column("name", sa.String(256), sa.ForeignKey("registered_models.name"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("fields", sa.JSON, nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# Blobs attached to a registered version after the fact (explanations,
# evaluation results): content-addressed like run artifacts.
version_artifacts = sa.Table(
    "version_artifacts",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("path", sa.String(1024), primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.ForeignKeyConstraint(["name", "version"], ["model_versions.name", "model_versions.version"]),
)

# Served traffic (migration 0004). The server spools predictions to local
# Arrow IPC segments; each closed segment becomes one Parquet blob in the
# artifact store and one row here (``segment`` is unique: ingesting a
# segment twice after a crash is a no-op). Monitoring reads windows of rows
# by time from the blobs.
prediction_segments = sa.Table(
    "prediction_segments",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("segment", sa.String(256), nullable=False, unique=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("first_ms", sa.BigInteger, nullable=False),
    sa.Column("last_ms", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index("ix_prediction_segments_model_time", "model", "version", "first_ms"),
)

# Ground truth posted after the fact, by the request id the server answered with.
prediction_labels = sa.Table(
    "prediction_labels",
    metadata,
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("label", sa.Text, nullable=False),  # JSON
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# Monitors over served traffic (migration 0005). A monitor compares windows of
# one model's logged predictions with a reference whose summary is computed
# once at creation and stored as a blob (``reference_sha256``). ``next_ms`` is
# where the next window starts: a pass evaluates every complete window from
# there, so a monitor run from cron never evaluates a window twice.
monitors = sa.Table(
    "monitors",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(256), nullable=False, unique=True),
    sa.Column("model_uri", sa.String(1024), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),  # the served name whose traffic is read
    sa.Column("version", sa.Integer, nullable=True),  # None: whatever version served the window
    sa.Column("window_ms", sa.BigInteger, nullable=False),
    sa.Column("next_ms", sa.BigInteger, nullable=False),
    sa.Column("reference", sa.JSON, nullable=False),  # what the reference was built from
    sa.Column("reference_sha256", sa.String(64), nullable=False),
    sa.Column("options", sa.JSON, nullable=False),  # preset, fdr, min_effect, sensitive column, limits
    sa.Column("webhook", sa.String(2048), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # active | paused
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# One evaluated window of a monitor. The full JSON result is a blob; the
# columns here are what list/show and alerting need without reading it.
monitor_results = sa.Table(
    "monitor_results",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("monitor_id", ID, sa.ForeignKey("monitors.id"), nullable=False),
    sa.Column("start_ms", sa.BigInteger, nullable=False),
    sa.Column("end_ms", sa.BigInteger, nullable=False),
    sa.Column("versions", sa.JSON, nullable=False),  # model versions seen in the window
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # ok | alert | empty
    sa.Column("alerts", sa.JSON, nullable=False),  # why it alerted, one line each
    sa.Column("summary", sa.JSON, nullable=False),  # drift share, drifted columns, key metrics
    sa.Column("result_sha256", sa.String(64), nullable=True),
    sa.Column("webhook_status", sa.String(64), nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("monitor_id", "start_ms"),
)

# -- Pipelines and retraining (migration 0007) --------------------------------
# A pipeline run is a tracked run (runs.id) with one child run per step; this
# row adds what a replay needs: the recorded sources, parameters, datasets
# and environment lock are in the JSON blob ``record_sha256``.
pipeline_runs = sa.Table(
    "pipeline_runs",
    metadata,
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("pipeline", sa.String(256), nullable=False, index=True),
    sa.Column("file", sa.String(1024), nullable=False),  # relative to the project root
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("datasets", sa.JSON, nullable=False),  # name -> {uri, sha256, filename}
    sa.Column("record_sha256", sa.String(64), nullable=False),
    sa.Column("lock_sha256", sa.String(64), nullable=False),
    sa.Column("executor", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # RUNNING / FINISHED / FAILED / KILLED
    sa.Column("error", sa.Text),
    sa.Column("outputs", sa.JSON),  # the pipeline function's result, as output references
    sa.Column("replay_of", ID),  # the pipeline run this one replays (keel retrain)
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("ended_at", sa.BigInteger),
)

# One row per step of a pipeline run: ran, cached (outputs reused) or failed.
pipeline_steps = sa.Table(
    "pipeline_steps",
    metadata,
    sa.Column("pipeline_run_id", ID, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("step", sa.String(256), primary_key=True),
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("cache_key", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # ran / cached / failed
    sa.Column("outputs", sa.JSON, nullable=False),  # [{kind, sha256, size}]
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# Cache key -> the outputs of the step run that computed them. Written in
# the same transaction as the step's success, never for a failed step.
pipeline_cache = sa.Table(
    "pipeline_cache",
    metadata,
    sa.Column("cache_key", sa.String(64), primary_key=True),
    sa.Column("step", sa.String(256), nullable=False),
    sa.Column("outputs", sa.JSON, nullable=False),
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# The champion/challenger gate's decision on a version, with every number.
gate_decisions = sa.Table(
    "gate_decisions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("champion_version", sa.Integer),
    sa.Column("blessed", sa.Boolean, nullable=False),
    sa.Column("reasons", sa.JSON, nullable=False),  # one line per failed check
    sa.Column("checks", sa.JSON, nullable=False),  # every check with its numbers
    sa.Column("promotion_request_id", ID),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.ForeignKeyConstraint(["name", "version"], ["model_versions.name", "model_versions.version"]),
    sa.Index("ix_gate_decisions_name_version", "name", "version"),
)

# Triggers fire retraining: on new files, on a schedule, by hand.
triggers = sa.Table(
    "triggers",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(256), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),  # new_data / schedule / manual
    sa.Column("spec", sa.JSON, nullable=False),  # {"path": glob} / {"cron": "..."}
    sa.Column("action", sa.JSON, nullable=False),  # {"retrain": model, ...}
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# Every firing and its outcome. ``dedupe_key`` (the new file and its content
# hash, the schedule tick) is unique per trigger: the same new data never
# fires twice, also across scheduler restarts.
trigger_firings = sa.Table(
    "trigger_firings",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("trigger_id", ID, sa.ForeignKey("triggers.id"), nullable=False),
    sa.Column("dedupe_key", sa.String(1024), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # running / succeeded / failed
    sa.Column("outcome", sa.JSON, nullable=False),
    sa.Column("fired_at", sa.BigInteger, nullable=False),
    sa.Column("finished_at", sa.BigInteger),
    sa.UniqueConstraint("trigger_id", "dedupe_key"),
)

# -- Deployments (migration 0006) ---------------------------------------------
# One row per `keel deploy`: the target, the stage's profile, the model
# (name + version for registry URIs, else the pinned runs:/ URI or bundle
# path), every written file with its sha256, and what apply started
# (``state``: pid, port, url, image). Lineage follows model_name/model_version.
deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("target", sa.String(32), nullable=False),
    sa.Column("stage", sa.String(64), nullable=False),
    sa.Column("model_name", sa.String(256)),
    sa.Column("model_version", sa.Integer),
    sa.Column("model_uri", sa.String(1024), nullable=False),
    sa.Column("bundle_sha256", sa.String(64), nullable=False),  # keel.yaml's sha256, which vouches for the bundle
    sa.Column("out_dir", sa.String(4096), nullable=False),
    sa.Column("files", sa.JSON, nullable=False),  # relative path -> sha256
    sa.Column("profile", sa.JSON, nullable=False),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("state", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # written / running / built / stopped / failed
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("stopped_by", sa.String(256)),
    sa.Column("stopped_at", sa.BigInteger),
    sa.Index("ix_deployments_model", "model_name", "model_version"),
)
