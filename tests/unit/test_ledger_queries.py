"""The ledger's statements: the model's columns only, and job states from JobStatus."""

from __future__ import annotations

import re

from app.jobs.models import FINISHED, NOTICE_DUE, NOTICE_INDEX, UNFINISHED, Job, JobStatus
from app.jobs.store import queries

#: Every named statement of the ledger layer.
STATEMENTS = {
    name: value
    for name, value in vars(queries).items()
    if name.isupper() and isinstance(value, str) and not name.endswith("_COLUMNS")
}
STATE_LITERAL = re.compile("'(" + "|".join(status.value for status in JobStatus) + ")'")


def test_the_upsert_writes_the_columns_of_the_model_that_a_folded_row_carries() -> None:
    columns = queries.UPSERT_COLUMNS
    assert set(columns) <= set(Job.__table__.columns.keys())
    assert len(set(columns)) == len(columns)
    assert set(re.findall(r"%\((\w+)\)s", queries.UPSERT_ROW)) == {
        "id",
        "status",
        "status_at",
        *queries.JOB_FIELDS,
    }
    assert queries.UPSERT == queries.UPSERT_HEAD + queries.UPSERT_ROW + queries.UPSERT_TAIL


def test_job_states_are_parameters_but_in_the_upsert_written_in_from_the_enum() -> None:
    written_in = {name for name, sql in STATEMENTS.items() if STATE_LITERAL.search(sql)}
    # The notifier's read repeats its partial index's condition, word for word.
    assert written_in == {"UPSERT", "UPSERT_TAIL", "NOTICE_DUE", "NOTICES_DUE"}
    assert f"WHERE {NOTICE_DUE}\n" in queries.NOTICES_DUE
    [index] = [i for i in Job.__table__.indexes if i.name == NOTICE_INDEX]
    assert str(index.dialect_options["postgresql"]["where"]) == NOTICE_DUE
    finished = ", ".join(f"'{status}'" for status in queries.states(FINISHED))
    assert f"WHEN j.status IN ({finished})" in queries.UPSERT_TAIL
    assert "EXCLUDED.status IN ('scheduled', 'queued')" in queries.UPSERT_TAIL


def test_state_parameters_follow_the_life_order_of_job_states() -> None:
    assert queries.UNFINISHED_STATES == ["scheduled", "queued", "running", "retrying"]
    assert queries.FINISHED_STATES == ["completed", "failed", "cancelled", "dead"]
    assert set(queries.UNFINISHED_STATES) == set(UNFINISHED)
    assert queries.states({JobStatus.DEAD, JobStatus.FAILED}) == ["failed", "dead"]


def test_every_statement_names_its_parameters_in_one_style() -> None:
    for name, sql in STATEMENTS.items():
        bare = re.sub(r"::\w+(\[\])?", "", sql)
        assert not re.search(r"(?<![:\w]):[a-z_]\w*", bare), f"{name} has a :name parameter"
