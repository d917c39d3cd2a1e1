"""The Alembic migrations build exactly the schema the models declare; wei amounts are exact."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from runtime.db import Base, Run, get_engine, session_factory


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
    migrate(engine)


def test_wei_amounts_beyond_64_bits_round_trip(tmp_path):
    Session = session_factory(f"sqlite:///{tmp_path / 'w.db'}")
    big = 10_000_000_000 * 10**18  # the whole AIC supply in wei
    with Session.begin() as s:
        s.add(
            Run(
                id="run-x",
                name="n",
                status="queued",
                pipeline_yaml="",
                pipeline_hash="h",
                overrides=[],
                plan={},
                plan_hash="p",
                quote_wei=big,
                metrics={},
            )
        )
    with Session() as s:
        assert s.get(Run, "run-x").quote_wei == big
