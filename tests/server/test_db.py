"""Schema migrations on SQLite and Postgres: the models and the Alembic history agree,
catalogs made before migrations are adopted, and the server runs on Postgres."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import Session, SQLModel
from sqlmodel.sql.sqltypes import UTCDateTime

from core.catalog import (
    AssessmentReport,
    AssessmentState,
    ImageCheckReport,
    TransitionRequest,
    VersionState,
)
from harness.publish import move, new_image, next_serial, pass_all, publish
from harness.servers import RunningServer, client, http, token
from server_api.catalog import get_version, record_assessment
from server_api.checks import record_check
from server_api.db import ALEMBIC_INI, engine_for, make_engine
from server_api.gate import missing_checks
from server_api.models import Assessment, Image, Version, VersionArch
from server_api.views import view
from tests.support import postgres_database

HEAD = "0012"


def _drift(url: str) -> list:
    """Differences between the migrated schema and the SQLModel tables."""
    engine = make_engine(url)
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)


def test_sqlite_migrations_match_the_models(tmp_path):
    assert _drift(f"sqlite:///{tmp_path / 'c.db'}") == []


def test_downgrade_to_base_and_up_again(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    cfg = Config(str(ALEMBIC_INI))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
        assert set(inspect(conn).get_table_names()) == {"alembic_version"}
        command.upgrade(cfg, "head")
        assert "feedcredential" in inspect(conn).get_table_names()


def test_a_catalog_from_before_migrations_is_adopted_and_keeps_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = Config(str(ALEMBIC_INI))
    with engine_for(url).begin() as conn:  # the skeleton's create_all schema, no history
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("INSERT INTO image VALUES ('a:b:c', 'a', 'b', 'c', '', '[]', '{}')"))
    with make_engine(url).connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        assert conn.execute(text("SELECT name FROM image")).scalar() == "a:b:c"
        columns = {c["name"] for c in inspect(conn).get_columns("token")}
        assert "expires_at" in columns


def _upgrade_from_0005_keeps_the_rows(url: str) -> None:
    """A catalog with an active version made before versions kept their inputs: upgraded,
    the version reads back without inputs, the image can be checked and the version
    revoked."""
    cfg = Config(str(ALEMBIC_INI))
    with engine_for(url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
        conn.execute(text("INSERT INTO image VALUES ('a:b:c', 'a', 'b', 'c', '', '[]', '{}')"))
        at = sa.column("created_at", UTCDateTime()), sa.column("state_changed_at", UTCDateTime())
        columns = ("image", "serial", "state", "required_checks")
        version = sa.table("version", *(sa.column(c) for c in columns), *at)
        now = datetime.now(UTC)
        conn.execute(
            sa.insert(version).values(
                image="a:b:c",
                serial="20261203-0001",
                state="active",
                required_checks="[]",
                created_at=now,
                state_changed_at=now,
            )
        )
    with Session(make_engine(url)) as session:
        old = get_version(session, "a:b:c", "20261203-0001")
        assert (old.spec_digest, view(session, old).inputs) == (None, None)
        check = record_check(session, "a:b:c", ImageCheckReport(unchanged_since=old.serial))
        assert check.unchanged_since == old.serial
        revision = session.execute(text("SELECT version_num FROM alembic_version"))
        assert revision.scalar() == HEAD
        old.state = VersionState.revoked  # a value the enum gained after 0005 (Postgres: 0008)
        session.add(old)
        session.commit()
        assert get_version(session, "a:b:c", "20261203-0001").state == VersionState.revoked


def test_sqlite_upgrade_from_the_previous_head_keeps_the_rows(tmp_path):
    _upgrade_from_0005_keeps_the_rows(f"sqlite:///{tmp_path / 'c.db'}")


@pytest.mark.postgres
def test_postgres_upgrade_from_the_previous_head_keeps_the_rows():
    with postgres_database("icefloe_upgrade") as url:
        _upgrade_from_0005_keeps_the_rows(url)


def _results_down_and_up_again(url: str) -> None:
    """Down to 0006 a not-applicable result becomes passed (what it was recorded as then);
    up again, a failed one counts one failure and not_applicable is a state again."""
    engine = make_engine(url)
    with Session(engine) as session:
        session.add(Image(name="a:b:c", os="a", release="b", variant="c"))
        version = Version(image="a:b:c", serial="20261203-0001", required_checks=["x", "y"])
        session.add(version)
        session.flush()
        session.add(
            VersionArch(
                version_id=version.pk,
                arch="x86_64",
                fingerprint="f" * 64,
                metadata_sha256="a" * 64,
                metadata_size=1,
                rootfs_sha256="b" * 64,
                rootfs_size=1,
            )
        )
        for check, state in (("x", AssessmentState.not_applicable), ("y", AssessmentState.failed)):
            session.add(
                Assessment(
                    version_id=version.pk,
                    arch="x86_64",
                    check=check,
                    instance_type="container",
                    host="h",
                    state=state,
                    failures=int(state == AssessmentState.failed),
                )
            )
        session.commit()
    cfg = Config(str(ALEMBIC_INI))
    states = text('SELECT "check", state, failures FROM assessment ORDER BY "check"')
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
        assert [
            tuple(r)
            for r in conn.execute(text('SELECT "check", state FROM assessment ORDER BY "check"'))
        ] == [("x", "passed"), ("y", "failed")]
        command.upgrade(cfg, "head")
        assert [tuple(r) for r in conn.execute(states)] == [("x", "passed", 0), ("y", "failed", 1)]
    with Session(engine) as session:
        row = get_version(session, "a:b:c", "20261203-0001")
        report = AssessmentReport(arch="x86_64", check="y", host="h", state="not_applicable")
        record_assessment(session, row, report)
        assert missing_checks(session, row) == {"x86_64": []}


def test_sqlite_results_down_and_up_again(tmp_path):
    _results_down_and_up_again(f"sqlite:///{tmp_path / 'c.db'}")


@pytest.mark.postgres
def test_postgres_results_down_and_up_again():
    with postgres_database("icefloe_results") as url:
        _results_down_and_up_again(url)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_database("icefloe_test") as url:
        yield url


@pytest.mark.postgres
def test_postgres_migrations_match_the_models(postgres_url):
    assert _drift(postgres_url) == []


@pytest.mark.postgres
def test_the_server_runs_on_postgres(postgres_url, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("ICEFLOE_SERVER_DATABASE_URL", postgres_url)
    with RunningServer(tmp_path, channel_file_grace_s=0) as server, http(server) as anonymous:
        assert server.server_settings.db_url == postgres_url
        publisher, operator = (
            client(server, server.token),
            client(server, token(server, "operator")),
        )
        image, old, new = new_image(arches=["x86_64"]), next_serial(), next_serial()
        for serial in (old, new):
            publish(publisher, image, serial, tmp=tmp_path)
            move(publisher, image, serial, "testing")
        pass_all(publisher, image, new)
        move(publisher, image, new, "active")
        move(publisher, image, old, "inactive")
        retest = TransitionRequest(to="testing", reason="re-test")
        assert operator.transition(image.name, old, retest).state == "testing"

        cred = operator._http.post("/api/v1/credentials", json={"name": "pg"}).json()
        feed = anonymous.get(f"{cred['feed_path']}/streams/v1/images.json").json()
        assert list(feed["products"][f"{image.os}:one:amd64:default"]["versions"]) == [new]
        assert [
            v.serial for v in publisher.versions(state=VersionState.testing, image=image.name)
        ] == [old]
        move(publisher, image, old, "inactive")
        assert operator.gc(grace_s=0).versions == [f"{image.name} {old}"]
        assert len(operator.events(image.name, old)) == 5
        for c in (publisher, operator):
            c.close()
