"""Drives `omen serve` with SQLAlchemy 2 and Alembic, as an application does.

Run by the integration test `server::sqlalchemy_and_alembic` with the
connection string (a postgresql:// URL) as its one argument; exits non-zero
(with a traceback) on any failure.

Declarative models with an identity key, a unique column, a foreign key with
ON DELETE CASCADE and an index; metadata.create_all (in a transaction, as
SQLAlchemy runs it); CRUD through a Session; errors as SQLAlchemy's
exception classes; reflection with inspect(); then Alembic applying a
migration, rolling back a failed one whole, and downgrading.
"""

import os
import sys
import tempfile
import textwrap

import sqlalchemy as sa
from sqlalchemy import exc, inspect, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

url = sys.argv[1].replace("postgresql://", "postgresql+psycopg://", 1)
engine = sa.create_engine(url)


def columns(table):
    """The column names of `table`, from information_schema."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = :t ORDER BY ordinal_position"
            ),
            {"t": table},
        )
        return [r[0] for r in rows]



class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(sa.Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(200), unique=True)
    name: Mapped[str] = mapped_column(sa.Text, index=True)
    books: Mapped[list["Book"]] = relationship(back_populates="author", passive_deletes=True)


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(sa.Identity(), primary_key=True)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("authors.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(sa.Text)
    author: Mapped[Author] = relationship(back_populates="books")


Base.metadata.create_all(engine)

with Session(engine) as session:
    ann = Author(email="ann@x", name="Ann", books=[Book(title="One"), Book(title="Two")])
    bob = Author(email="bob@x", name="Bob", books=[Book(title="Three")])
    session.add_all([ann, bob])
    session.commit()
    assert ann.id is not None and bob.id is not None and ann.id != bob.id
    titles = session.scalars(
        select(Book.title).join(Author).where(Author.name == "Ann").order_by(Book.title)
    ).all()
    assert titles == ["One", "Two"], titles
    bob.name = "Robert"
    session.commit()
    assert session.scalar(select(Author.name).where(Author.email == "bob@x")) == "Robert"

# Constraint violations arrive as SQLAlchemy's IntegrityError, with the SQLSTATE.
def refused(session, row, sqlstate):
    """Adding `row` fails at commit with IntegrityError carrying `sqlstate`."""
    session.add(row)
    try:
        session.commit()
    except exc.IntegrityError as e:
        assert e.orig.sqlstate == sqlstate, (e.orig.sqlstate, sqlstate)
        session.rollback()
        return
    raise AssertionError(f"{row!r} was accepted")


with Session(engine) as session:
    refused(session, Author(email="ann@x", name="Other Ann"), "23505")
    refused(session, Book(author_id=999, title="Orphan"), "23503")

# ON DELETE CASCADE in the database.
with Session(engine) as session:
    ann = session.scalars(select(Author).where(Author.email == "ann@x")).one()
    session.delete(ann)
    session.commit()
    assert session.scalar(select(sa.func.count()).select_from(Book)) == 1

# Reflection reads back what create_all made.
inspector = inspect(engine)
assert sorted(inspector.get_table_names()) == ["authors", "books"], inspector.get_table_names()
# (inspector.get_columns is left out: its query reads an outer column in the
# select list of a correlated scalar subquery, which omen cannot plan yet.)
pk = inspector.get_pk_constraint("books")
assert pk["constrained_columns"] == ["id"], pk
fks = inspector.get_foreign_keys("books")
assert len(fks) == 1, fks
assert fks[0]["referred_table"] == "authors", fks
assert fks[0]["constrained_columns"] == ["author_id"], fks
assert fks[0]["referred_columns"] == ["id"], fks
assert fks[0]["options"].get("ondelete") == "CASCADE", fks
uniques = inspector.get_unique_constraints("authors")
assert [u["column_names"] for u in uniques] == [["email"]], uniques
indexes = {i["name"]: i for i in inspector.get_indexes("authors")}
assert indexes["ix_authors_name"]["column_names"] == ["name"], indexes

# Alembic: migrations run in a transaction each; a failing one leaves
# nothing behind.
from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402

with tempfile.TemporaryDirectory() as root:
    scripts = os.path.join(root, "migrations")
    ini = os.path.join(root, "alembic.ini")
    command.init(Config(ini), scripts, template="generic")
    config = Config(ini)
    config.set_main_option("script_location", scripts)
    config.set_main_option("sqlalchemy.url", url)
    versions = os.path.join(scripts, "versions")

    def migration(revision, down, upgrade, downgrade):
        def body(code):
            return textwrap.indent(textwrap.dedent(code), "    ")

        source = (
            "import sqlalchemy as sa\n"
            "from alembic import op\n\n"
            f"revision = {revision!r}\n"
            f"down_revision = {down!r}\n"
            "branch_labels = None\n"
            "depends_on = None\n\n\n"
            f"def upgrade():\n{body(upgrade)}\n\n"
            f"def downgrade():\n{body(downgrade)}\n"
        )
        with open(os.path.join(versions, f"{revision}.py"), "w") as f:
            f.write(source)

    migration(
        "a1",
        None,
        """\
        op.create_table("tags", sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
                        sa.Column("label", sa.Text, nullable=False, unique=True))
        op.add_column("books", sa.Column("tag_id", sa.Integer, sa.ForeignKey("tags.id")))
        op.create_index("ix_books_title", "books", ["title"])
        """,
        """\
        op.drop_index("ix_books_title", "books")
        op.drop_column("books", "tag_id")
        op.drop_table("tags")
        """,
    )
    command.upgrade(config, "a1")
    tables = set(inspect(engine).get_table_names())
    assert tables == {"alembic_version", "authors", "books", "tags"}, tables
    assert "tag_id" in columns("books"), columns("books")

    # The second statement of this one fails: the first must not stay.
    migration(
        "a2",
        "a1",
        """\
        op.add_column("authors", sa.Column("bio", sa.Text))
        op.create_table("tags", sa.Column("id", sa.Integer, primary_key=True))
        """,
        """\
        op.drop_column("authors", "bio")
        """,
    )
    try:
        command.upgrade(config, "a2")
        raise AssertionError("a migration that creates an existing table went through")
    except exc.ProgrammingError as e:
        assert e.orig.sqlstate == "42P07", e.orig.sqlstate
    assert columns("authors") == ["id", "email", "name"], columns("authors")
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == "a1"

    command.downgrade(config, "base")
    tables = set(inspect(engine).get_table_names())
    assert tables == {"alembic_version", "authors", "books"}, tables
    assert columns("books") == ["id", "author_id", "title"], columns("books")

print("sqlalchemy and alembic: ok")
