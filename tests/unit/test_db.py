"""The Alembic migrations build exactly the schema the models declare; wei amounts are exact."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, orm, text

from runtime.db import Base, Run, Step, get_engine, session_factory


def test_migrations_match_the_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    engine = get_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migrating_twice_is_harmless(tmp_path):
    from runtime.db import migrate

    engine = create_engine(f"sqlite:///{tmp_path / 'twice.db'}")
    migrate(engine)
    with orm.Session(engine) as s, s.begin():
        s.add(a_run("run-kept"))
        s.add(Step(run_id="run-kept", node_id="faq", block_id="chat.faq-csv", version="1.0.0", position=0,
                   status="succeeded", cache_key="k", metrics={"rows": 3}))  # fmt: skip
    before = schema_and_rows(engine)
    migrate(engine)
    after = schema_and_rows(engine)
    assert after == before
    assert set(before["tables"]) >= {t.name for t in Base.metadata.sorted_tables} | {"alembic_version"}
    assert before["rows"]["runs"] and before["rows"]["steps"] and len(before["rows"]["alembic_version"]) == 1
    assert before["tables"]["usage"]["indexes"]  # the inspection sees indexes (so a lost one would show)


def schema_and_rows(engine) -> dict:
    """Every table's columns, keys and indexes as SQLAlchemy reflects them, and every row of every table."""
    insp = inspect(engine)
    tables = {
        t: {
            "columns": [(c["name"], str(c["type"]), c["nullable"], c["default"]) for c in insp.get_columns(t)],
            "primary_key": insp.get_pk_constraint(t)["constrained_columns"],
            "foreign_keys": sorted(
                (tuple(k["constrained_columns"]), k["referred_table"]) for k in insp.get_foreign_keys(t)
            ),
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(t)),
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(t)),
        }
        for t in insp.get_table_names()
    }
    with engine.connect() as conn:
        rows = {t: sorted(map(tuple, conn.execute(text(f'SELECT * FROM "{t}"')))) for t in tables}
    return {"tables": tables, "rows": rows}


def test_wei_amounts_beyond_64_bits_round_trip(tmp_path):
    Session = session_factory(f"sqlite:///{tmp_path / 'w.db'}")
    big = 10_000_000_000 * 10**18  # the whole AIC supply in wei
    with Session.begin() as s:
        s.add(a_run("run-x", quote_wei=big))
    with Session() as s:
        assert s.get(Run, "run-x").quote_wei == big


def a_run(run_id: str, quote_wei: int = 0) -> Run:
    return Run(id=run_id, name="n", status="queued", pipeline_yaml="", pipeline_hash="h", overrides=[], plan={},
               plan_hash="p", quote_wei=quote_wei, metrics={})  # fmt: skip


def test_processes_opening_a_new_database_at_once_all_find_it_migrated(tmp_path):
    """Eight processes opening the same new SQLite file at the same moment: one migrates, the others wait for it
    (without the lock some failed with "table runs already exists")."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'new.db'}"
    code = f"from runtime.db import get_engine; get_engine({url!r}); print('ok')"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]  # fmt: skip
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err[-500:] for _, err in results]
