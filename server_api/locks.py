"""Rows a transaction holds until it ends, on Postgres and on SQLite alike.

Postgres locks the rows a `SELECT ... FOR UPDATE` returns; a concurrent transaction that
wants one waits for the commit and then reads what was committed. SQLite has no row
locks but one writer at a time: the transaction takes the write lock first
(`BEGIN IMMEDIATE`), so what it reads next is the newest data and stays so until it ends.
"""

from collections.abc import Sequence
from typing import TypeVar

from sqlmodel import Session
from sqlmodel.sql.expression import SelectOfScalar

T = TypeVar("T")


def locked(session: Session, statement: SelectOfScalar[T]) -> Sequence[T]:
    """The rows of `statement`, fresh (even if the session read them before) and held
    until the session commits or rolls back."""
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        sqlite = conn.connection.driver_connection
        # pysqlite opens a transaction only before a write; one already open holds the lock.
        if sqlite is not None and not sqlite.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    return session.exec(statement.with_for_update().execution_options(populate_existing=True)).all()
