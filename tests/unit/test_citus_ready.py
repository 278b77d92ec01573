"""The schema stays distributable on Citus by space, read from the SQL (docs/operations.md).

This is the quick, static half; the real proof is the whole integration suite run on a
Citus cluster (``KITH_TEST_CITUS=1``, the third configuration of ``.ci/run``), where the
migrations distribute the schema as ``service/store/distribution.py`` says. This file keeps
the property that makes that cheap and private: every statement names its space.

Every synced table and every per-space bookkeeping table is keyed ``(space_id, …)``, so it
can be distributed by ``space_id`` and colocated with ``spaces`` (distributed by ``id``);
and every statement in ``service/store/`` that touches one of them names its space — a
``space_id`` compared with a parameter, joined to a table that is, or supplied by an INSERT
— so on Citus it runs on one shard group. The few statements that span spaces on purpose
(maintenance by age, the morning sweep, operator reports, a caregiver's own links) are
listed below with their reason; any other unscoped statement fails here.

The SQL is read with ``ast`` from the store modules: string constants and f-strings passed
to ``fetch``/``fetchrow``/``fetchval``/``execute``/``executemany`` (and ``COPY`` column
lists), module-level SQL strings and per-table dicts, expanded over the fixed table tuples
they are built from. A statement whose text cannot be read that way fails the test too.
"""

from __future__ import annotations

import ast
import importlib
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from schemas.tables import TABLES
from service.store import distribution
from service.store.sync import SYNCED_TABLES

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "migrations"
STORE = ROOT / "service" / "store"

SYNCED = frozenset(TABLES)
#: Per-space bookkeeping the sync engine and the rules engine keep beside the records.
BOOKKEEPING = frozenset({"sync_batches", "conflicts", "nudge_requests"})

#: Statements that span spaces on purpose: (store module, function, table) → why.
ALLOWED_UNSCOPED: dict[tuple[str, str, str], str] = {
    **{
        ("sync", "purge_tombstones", t): "maintenance: tombstones past the horizon, by age"
        for t in SYNCED_TABLES
    },
    ("sync", "purge_expired", "conflicts"): "maintenance: conflict history past retention",
    ("sync", "purge_expired", "sync_batches"): "maintenance: batch records past retention",
    ("insights", "due_for_morning_sweep", "spaces"): "the morning sweep looks at every space",
    ("insights", "due_for_morning_sweep", "settings"): "the sweep reads each space's time zone",
    ("nudges", "effectiveness", "nudge_requests"): "operator report (kith report) over everyone",
    ("nudges", "effectiveness", "interactions"): "operator report: meetings after each nudge",
    ("accounts", "user_space", "spaces"): "sign-in (password, Apple, Google) of a person the "
    "release before migration 0008 registered during the rollout (no users.space_id): the "
    "space is found by owner",
    ("care", "links_of_caregiver", "care_links"): "a caregiver's links span the people cared for",
    ("care", "link_for_caregiver", "care_links"): "a caregiver opens one of their links by id",
    ("lifecycle", "space_of", "spaces"): "erasure of a person the release before 0008 "
    "registered during its rollout (no users.space_id): the space is found by owner",
    ("lifecycle", "links_as_caregiver", "care_links"): "erasure: a caregiver's links span spaces",
    ("lifecycle", "erase_account", "care_links"): "erasure: the links a caregiver held, by user",
    ("lifecycle", "anonymise_caregiver_audit", "care_audit"): "erasure: a caregiver's views",
    ("lifecycle", "export_links", "care_links"): "export: the people a caregiver cares for",
    ("care_alerts", "no_response_alerts", "care_alerts"): "operator report: unanswered help",
    ("keys", "keys_not_under", "space_keys"): "kith rotate-keys walks every person's key",
    ("private_text", "spaces_after", "spaces"): "kith seal-existing walks every space once",
}

#: Unique constraints Citus could not enforce on the tables as they are distributed
#: (service/store/distribution.py): none since migration 0008 moved "one space per person"
#: onto users.space_id.
KNOWN_CITUS_CHANGES: set[tuple[str, tuple[str, ...]]] = set()

#: Calls that run text from elsewhere, not SQL of the store's own: (module, function) → what.
EXTERNAL_SQL = {("migrations", "apply_migration"): "a migration file (its keys are checked above)"}

_SQL_METHODS = frozenset({"fetch", "fetchrow", "fetchval", "execute", "executemany"})


# -- reading migrations ------------------------------------------------------------------


def _mask_sql(sql: str) -> str:
    """Drop ``--`` comments and blank out string literals (their parentheses and words are
    not SQL structure)."""
    out: list[str] = []
    i = 0
    while i < len(sql):
        ch = sql[i]
        if ch == "'":
            end = i + 1
            while end < len(sql) and not (sql[end] == "'" and sql[end + 1 : end + 2] != "'"):
                end += 2 if sql[end] == "'" else 1
            out.append("''")
            i = end + 1
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = len(sql) if newline < 0 else newline
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _columns(text: str) -> tuple[str, ...]:
    return tuple(c.strip().lower() for c in text.split(","))


@dataclass
class TableKeys:
    primary_key: tuple[str, ...] | None = None
    unique: list[tuple[str, ...]] = field(default_factory=list)


def _constraints(element: str, keys: TableKeys) -> None:
    """Record a table element's PRIMARY KEY / UNIQUE (a constraint or a column's)."""
    element = re.sub(r"^CONSTRAINT\s+\w+\s+", "", element.strip(), flags=re.I)
    listed = re.match(r"(PRIMARY\s+KEY|UNIQUE)\s*\(([^)]*)\)", element, flags=re.I)
    if listed:
        columns = _columns(listed[2])
        if listed[1].upper().startswith("PRIMARY"):
            keys.primary_key = columns
        else:
            keys.unique.append(columns)
        return
    column = re.match(r"(\w+)\s", element)
    if column and not re.match(r"(LIKE|CHECK|FOREIGN|EXCLUDE)\b", element, flags=re.I):
        if re.search(r"\bPRIMARY\s+KEY\b", element, flags=re.I):
            keys.primary_key = (column[1].lower(),)
        elif re.search(r"\bUNIQUE\b", element, flags=re.I):
            keys.unique.append((column[1].lower(),))


def schema_keys(directory: Path = MIGRATIONS) -> dict[str, TableKeys]:
    """Every table's primary key and unique constraints after all migrations."""
    tables: dict[str, TableKeys] = {}
    for path in sorted(directory.glob("*.sql")):
        for statement in _split_top(_mask_sql(path.read_text()), ";"):
            sql = " ".join(statement.split())
            if m := re.match(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+) \((.*)\)$", sql, re.I):
                keys = tables.setdefault(m[1].lower(), TableKeys())
                for element in _split_top(m[2], ","):
                    _constraints(element, keys)
            elif m := re.match(r"ALTER TABLE (?:ONLY )?(\w+) (.*)$", sql, re.I):
                table, keys = m[1].lower(), tables.setdefault(m[1].lower(), TableKeys())
                for action in _split_top(m[2], ","):
                    if re.match(r"DROP CONSTRAINT \w+_pkey\b", action, re.I):
                        keys.primary_key = None
                    elif d := re.match(r"DROP CONSTRAINT (\w+)_key\b", action, re.I):
                        # PostgreSQL names a UNIQUE constraint {table}_{columns}_key
                        keys.unique = [
                            u for u in keys.unique if f"{table}_{'_'.join(u)}" != d[1].lower()
                        ]
                    elif m := re.match(r"ADD\s+(?:COLUMN\s+(?:IF NOT EXISTS\s+)?)?", action, re.I):
                        _constraints(action[m.end() :], keys)
            elif m := re.match(r"CREATE UNIQUE INDEX .*? ON (\w+) \(([^)]*)\)", sql, re.I):
                tables.setdefault(m[1].lower(), TableKeys()).unique.append(_columns(m[2]))
    return tables


SCHEMA = schema_keys()
#: Tables keyed by space: distributed by space_id on Citus. Statements on these (and on
#: ``spaces``, keyed by ``id``) must name their space.
SPACE_KEYED = frozenset(
    t for t, k in SCHEMA.items() if k.primary_key and k.primary_key[0] == "space_id"
)


# -- reading the store's SQL -------------------------------------------------------------


class UnreadableSQL(Exception):
    """A statement's text is not built from literals and the fixed table tuples."""


@dataclass(frozen=True, slots=True)
class Statement:
    module: str
    function: str
    line: int
    sql: str


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


class _Module:
    """Renders a store module's SQL expressions into the statements they can produce."""

    def __init__(self, source: str, name: str) -> None:
        self.name = name
        self.tree = ast.parse(source)
        self.parents: dict[ast.AST, ast.AST] = {
            child: node for node in ast.walk(self.tree) for child in ast.iter_child_nodes(node)
        }
        self.constants: dict[str, ast.expr] = {}
        self.imports: dict[str, str] = {}
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                if isinstance(node.targets[0], ast.Name):
                    self.constants[node.targets[0].id] = node.value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if node.value is not None:
                    self.constants[node.target.id] = node.value
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = node.module

    def where(self, node: ast.AST) -> str:
        return f"{self.name}.py:{getattr(node, 'lineno', '?')}"

    def function_of(self, node: ast.AST) -> ast.AsyncFunctionDef | ast.FunctionDef | None:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
                return node
        return None

    # values a loop or comprehension variable takes
    def sequence(self, node: ast.expr) -> list[object]:
        if isinstance(node, ast.Tuple | ast.List):
            try:
                return list(ast.literal_eval(node))
            except ValueError:
                pass
        if isinstance(node, ast.Name):
            if node.id in self.constants:
                try:
                    return self.sequence(self.constants[node.id])
                except UnreadableSQL:  # computed at import (``tuple(TABLES)``): ask the module
                    value = getattr(importlib.import_module(f"service.store.{self.name}"), node.id)
                    if isinstance(value, tuple | list):
                        return list(value)
                    raise
            if node.id in self.imports:
                value = getattr(importlib.import_module(self.imports[node.id]), node.id)
                if isinstance(value, tuple | list):
                    return list(value)
        raise UnreadableSQL(f"{self.where(node)}: cannot tell what {ast.unparse(node)} holds")

    def _bind(self, target: ast.expr, value: object, env: dict[str, str]) -> dict[str, str]:
        if isinstance(target, ast.Name) and isinstance(value, str):
            return {**env, target.id: value}
        if isinstance(target, ast.Tuple) and isinstance(value, tuple):
            for t, v in zip(target.elts, value, strict=True):
                env = self._bind(t, v, env)
            return env
        raise UnreadableSQL(f"{self.where(target)}: cannot bind {ast.unparse(target)}")

    def bindings(
        self, loops: list[tuple[ast.expr, ast.expr]], env: dict[str, str]
    ) -> list[dict[str, str]]:
        envs = [env]
        for target, iterable in loops:
            envs = [self._bind(target, v, e) for e in envs for v in self.sequence(iterable)]
        return envs

    def render(self, node: ast.expr, env: Mapping[str, str]) -> list[str]:
        """Every text ``node`` can evaluate to, with loop variables bound by ``env``."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.JoinedStr):
            parts: list[list[str]] = []
            for value in node.values:
                if isinstance(value, ast.FormattedValue):
                    parts.append(self.render(value.value, env))
                else:
                    parts.append(self.render(value, env))
            return ["".join(p) for p in itertools.product(*parts)]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.render(node.left, env), self.render(node.right, env)
            return [a + b for a in left for b in right]
        if isinstance(node, ast.IfExp):
            return self.render(node.body, env) + self.render(node.orelse, env)
        if isinstance(node, ast.Name):
            if node.id in env:
                return [env[node.id]]
            if node.id in self.constants:
                return self.render(self.constants[node.id], {})
        if isinstance(node, ast.Subscript):
            return self.render(node.value, env)
        if isinstance(node, ast.DictComp):
            loops = [(g.target, g.iter) for g in node.generators]
            return [s for e in self.bindings(loops, dict(env)) for s in self.render(node.value, e)]
        if isinstance(node, ast.Dict):
            return [s for v in node.values if v is not None for s in self.render(v, env)]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "join"
            and isinstance(node.func.value, ast.Constant)
            and isinstance(node.func.value.value, str)
            and len(node.args) == 1
            and isinstance(node.args[0], ast.GeneratorExp | ast.ListComp)
        ):
            gen = node.args[0]
            loops = [(g.target, g.iter) for g in gen.generators]
            pieces = [self.render(gen.elt, e) for e in self.bindings(loops, dict(env))]
            return [node.func.value.value.join(p) for p in itertools.product(*pieces)]
        raise UnreadableSQL(f"{self.where(node)}: cannot read SQL from {ast.unparse(node)}")

    def enclosing_loops(self, node: ast.AST, uses: set[str]) -> list[tuple[ast.expr, ast.expr]]:
        """The ``for`` loops around ``node`` that bind a name in ``uses`` (outermost first)."""
        loops: list[tuple[ast.expr, ast.expr]] = []
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, ast.For | ast.AsyncFor) and _names(node.target) & uses:
                loops.insert(0, (node.target, node.iter))
        return loops

    def local_value(self, name: ast.Name) -> ast.expr | None:
        """``sql = …`` assigned once in the function that uses ``name``."""
        function = self.function_of(name)
        if function is None:
            return None
        values = [
            n.value
            for n in ast.walk(function)
            if isinstance(n, ast.Assign)
            and len(n.targets) == 1
            and isinstance(n.targets[0], ast.Name)
            and n.targets[0].id == name.id
        ]
        return values[0] if len(values) == 1 else None

    def statements(self) -> Iterator[Statement]:
        for node in ast.walk(self.tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            method = node.func.attr
            function = self.function_of(node)
            where = (self.name, function.name if function else "<module>")
            if where in EXTERNAL_SQL:
                continue
            if method in _SQL_METHODS and node.args:
                expr = node.args[0]
                if isinstance(expr, ast.Name) and (local := self.local_value(expr)) is not None:
                    expr = local
                texts = [self.render(expr, env) for env in self._envs(node, _names(expr))]
            elif method == "copy_records_to_table" and node.args:
                envs = self._envs(node, _names(node.args[0]))
                texts = [self._copy_as_insert(node, env) for env in envs]
            else:
                continue
            for sql in sorted({s for group in texts for s in group}):
                yield Statement(*where, node.lineno, sql)

    def _envs(self, node: ast.AST, uses: set[str]) -> list[dict[str, str]]:
        return self.bindings(self.enclosing_loops(node, uses), {})

    def _copy_as_insert(self, node: ast.Call, env: dict[str, str]) -> list[str]:
        """``COPY table (columns)`` read as the INSERT it is."""
        columns = next((k.value for k in node.keywords if k.arg == "columns"), None)
        if columns is None:
            raise UnreadableSQL(f"{self.where(node)}: COPY without an explicit column list")
        names = ", ".join(str(c) for c in self.sequence(columns))
        return [f"INSERT INTO {t} ({names})" for t in self.render(node.args[0], env)]


def statements_of(source: str, module: str) -> list[Statement]:
    return list(_Module(source, module).statements())


def store_statements() -> list[Statement]:
    return [
        s for path in sorted(STORE.glob("*.py")) for s in statements_of(path.read_text(), path.stem)
    ]


# -- is a statement scoped to a space? ---------------------------------------------------

# fmt: off
_NOT_ALIAS = frozenset({
    "where", "on", "set", "join", "left", "right", "inner", "outer", "full", "cross", "natural",
    "lateral", "using", "group", "order", "limit", "for", "returning", "values", "select",
    "union", "except", "intersect", "as", "having", "window", "when", "then", "with", "do",
})
# fmt: on
_REF = re.compile(r"\b(FROM|JOIN|INTO|UPDATE)\s+(\w+)(?:\s+(?:AS\s+)?(\w+))?", re.I)
_INSERT = re.compile(r"\bINSERT\s+INTO\s+(\w+)(?:\s+(?:AS\s+)?\w+)?\s*\(([^)]*)\)", re.I)
_PARAM = r"(?:ANY\s*\(\s*)?\$\d+"


@dataclass(frozen=True, slots=True)
class _Ref:
    table: str
    qualifier: str  # its alias, or the table's own name
    aliased: bool
    block: int


def _query_blocks(sql: str) -> list[str]:
    """The statement and each parenthesised subquery — split at UNION/INTERSECT/EXCEPT —
    each with the subqueries inside it blanked out, so a condition is read in the block
    where it stands."""
    spans, stack = [], []
    for i, ch in enumerate(sql):
        if ch == "(":
            stack.append(i)
        elif ch == ")" and stack:
            spans.append((stack.pop() + 1, i))
    queries = [
        (s, e)
        for s, e in spans
        if re.match(r"\s*(SELECT|WITH|INSERT|UPDATE|DELETE)\b", sql[s:e], re.I)
    ]
    blocks = []
    for start, end in [(0, len(sql)), *queries]:
        text = list(sql)
        for s, e in queries:
            if start <= s and e <= end and (s, e) != (start, end):
                text[s:e] = " " * (e - s)
        blocks += re.split(r"\b(?:UNION|INTERSECT|EXCEPT)\b", "".join(text[start:end]), flags=re.I)
    return blocks


def _key(table: str) -> str:
    return "id" if table == "spaces" else "space_id"


def unscoped_tables(sql: str, scoped: frozenset[str]) -> set[str]:
    """The space-keyed tables (and ``spaces``) that ``sql`` reaches without naming a space."""
    sql = _mask_sql(sql)
    checked = scoped | {"spaces"}
    blocks = _query_blocks(sql)
    refs: list[_Ref] = []
    for n, block in enumerate(blocks):
        for m in _REF.finditer(block):
            table, alias = m[2].lower(), (m[3] or "").lower()
            if table in checked:
                aliased = bool(alias) and alias not in _NOT_ALIAS
                refs.append(_Ref(table, alias if aliased else table, aliased, n))
    parameter_sets = {
        a.lower()
        for a in re.findall(
            r"unnest\(\s*\$\d+[^)]*\)\s+(?:WITH\s+ORDINALITY\s+)?(?:AS\s+)?(\w+)", sql, re.I
        )
    }
    inserted = {m[1].lower() for m in _INSERT.finditer(sql) if _key(m[1].lower()) in _columns(m[2])}

    def named(ref: _Ref) -> bool:
        key, q = _key(ref.table), re.escape(ref.qualifier)
        if ref.table in inserted and re.search(
            rf"\bINTO\s+{re.escape(ref.table)}\b", blocks[ref.block], re.I
        ):
            return True
        if re.search(rf"\b{q}\.{key}\s*=\s*{_PARAM}|\$\d+\s*=\s*{q}\.{key}\b", sql, re.I):
            return True
        for s in parameter_sets:
            if re.search(rf"\b{q}\.{key}\s*=\s*{s}\.\w+|\b{s}\.\w+\s*=\s*{q}\.{key}\b", sql, re.I):
                return True
        # an unqualified condition belongs to the unaliased table of its own block
        return not ref.aliased and bool(
            re.search(rf"(?<![\w.]){key}\s*=\s*{_PARAM}", blocks[ref.block], re.I)
        )

    anchored = {r for r in refs if named(r)}
    joins = re.findall(r"\b(\w+)\.(\w+)\s*=\s*(\w+)\.(\w+)", sql)
    changed = True
    while changed:  # a table joined on its space key to one that names its space
        changed = False
        for r in refs:
            if r in anchored:
                continue
            for qa, ca, qb, cb in joins:
                for mine, col, other, other_col in ((qa, ca, qb, cb), (qb, cb, qa, ca)):
                    if mine.lower() != r.qualifier or col.lower() != _key(r.table):
                        continue
                    if any(
                        a.qualifier == other.lower() and other_col.lower() == _key(a.table)
                        for a in anchored
                    ):
                        anchored.add(r)
                        changed = True
    return {r.table for r in refs if r not in anchored}


def offenders(
    statements: list[Statement], scoped: frozenset[str]
) -> dict[tuple[str, str, str], str]:
    """(module, function, table) → the statement, for every unscoped reach."""
    found: dict[tuple[str, str, str], str] = {}
    for s in statements:
        for table in unscoped_tables(s.sql, scoped):
            found.setdefault((s.module, s.function, table), " ".join(s.sql.split()))
    return found


# -- the schema --------------------------------------------------------------------------


def test_the_synced_tables_are_the_ones_the_store_writes() -> None:
    assert set(SYNCED_TABLES) == SYNCED


@pytest.mark.parametrize("table", sorted(SYNCED))
def test_synced_tables_are_keyed_space_then_id(table: str) -> None:
    # created as `LIKE contacts …, PRIMARY KEY (space_id, id)`: LIKE does not copy the key
    assert SCHEMA[table].primary_key == ("space_id", "id")


@pytest.mark.parametrize("table", sorted(BOOKKEEPING))
def test_space_bookkeeping_tables_lead_their_key_with_space_id(table: str) -> None:
    key = SCHEMA[table].primary_key
    assert key is not None
    assert key[0] == "space_id"
    assert len(key) >= 2


def test_space_keyed_tables_are_found_in_the_migrations() -> None:
    assert SYNCED | BOOKKEEPING <= SPACE_KEYED
    assert "users" not in SPACE_KEYED
    assert "jobs" not in SPACE_KEYED


def test_every_table_has_one_place_on_citus() -> None:
    """A table a migration adds must be placed (service/store/distribution.py) before it
    ships: by space, reference or coordinator — and only the space-keyed ones by space."""
    groups = [set(distribution.BY_SPACE), set(distribution.REFERENCE)]
    groups.append(set(distribution.COORDINATOR))
    placed = [t for g in groups for t in g]
    assert len(placed) == len(set(placed))  # no table in two groups
    assert set(SCHEMA) | {"schema_migrations"} == set(placed)
    assert set(distribution.BY_SPACE) == SPACE_KEYED | {"spaces"}
    for table, column in distribution.BY_SPACE.items():
        key = SCHEMA[table].primary_key
        assert column == _key(table)
        assert key is not None
        assert key[0] == column


def test_unique_constraints_include_the_distribution_column() -> None:
    """Citus enforces a unique constraint only when it includes the distribution column:
    space_id for the space-keyed tables, id for spaces."""
    violations = {
        (t, cols)
        for t, keys in SCHEMA.items()
        if t in SPACE_KEYED or t == "spaces"
        for cols in keys.unique
        if _key(t) not in cols
    }
    assert violations == KNOWN_CITUS_CHANGES


# -- the store's statements --------------------------------------------------------------


def test_every_statement_on_a_space_keyed_table_names_its_space() -> None:
    found = offenders(store_statements(), SPACE_KEYED)
    unexpected = {k: sql for k, sql in found.items() if k not in ALLOWED_UNSCOPED}
    assert not unexpected, (
        "statements that reach other spaces (scope them or allow-list them):\n"
        + "\n".join(f"  {m}.{f} → {t}: {sql}" for (m, f, t), sql in sorted(unexpected.items()))
    )


def test_the_allow_list_names_only_statements_that_exist() -> None:
    found = offenders(store_statements(), SPACE_KEYED)
    assert sorted(set(ALLOWED_UNSCOPED) - set(found)) == []


def test_the_store_reads_and_writes_every_synced_table_by_space() -> None:
    """The reader above really sees the store's SQL: the per-table statements built from
    SYNCED_TABLES (loads, upserts, the pull's UNION) expand to every synced table."""
    statements = store_statements()
    for table in SYNCED:
        upserts = [s for s in statements if re.search(rf"INSERT INTO {table} AS r\b", s.sql)]
        loads = [
            s for s in statements if s.function == "load_records" and f"FROM {table} " in s.sql
        ]
        assert upserts, table
        assert loads, table
        assert not unscoped_tables(upserts[0].sql, SPACE_KEYED | {table})
    pull = [s for s in statements if s.function == "pull_page"]
    assert len(pull) == 1
    assert all(f"FROM {t} WHERE space_id = $1" in pull[0].sql for t in SYNCED)


# -- the reader itself -------------------------------------------------------------------

_SCOPED = frozenset({"contacts", "interactions", "settings", "nudge_requests"})


def _unscoped(source: str) -> set[tuple[str, str, str]]:
    return set(offenders(statements_of(source, "scratch"), _SCOPED))


def test_a_lookup_by_record_id_alone_is_caught() -> None:
    source = """
async def by_id(conn, record_id):
    return await conn.fetchrow("SELECT * FROM contacts WHERE id = $1", record_id)
"""
    assert _unscoped(source) == {("scratch", "by_id", "contacts")}


def test_scoped_reads_writes_and_joins_pass() -> None:
    source = '''
async def ok(conn, space_id, ids):
    await conn.fetch("SELECT * FROM contacts WHERE space_id = $1 AND id = ANY($2)", space_id, ids)
    await conn.execute("INSERT INTO contacts (space_id, id) VALUES ($1, $2)", space_id, "c")
    await conn.fetch(
        """SELECT n.id FROM nudge_requests n
           LEFT JOIN settings st ON st.space_id = n.space_id AND st.id = 'settings'
           WHERE n.space_id = $1""",
        space_id,
    )
    await conn.fetch(
        "SELECT 1 FROM unnest($1::text[]) AS s(id) WHERE EXISTS "
        "(SELECT 1 FROM settings st WHERE st.space_id = s.id)",
        ids,
    )
    await conn.fetch(
        "SELECT k.ord FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(space_id, id, ord) "
        "JOIN nudge_requests n ON n.space_id = k.space_id AND n.id = k.id",
        ids,
        ids,
    )
'''
    assert _unscoped(source) == set()


def test_a_join_to_an_unscoped_table_is_not_scope() -> None:
    source = '''
async def report(conn):
    await conn.fetch(
        """SELECT n.rule FROM nudge_requests n
           JOIN interactions i ON i.space_id = n.space_id WHERE n.state = 'sent'"""
    )
'''
    assert _unscoped(source) == {
        ("scratch", "report", "nudge_requests"),
        ("scratch", "report", "interactions"),
    }


def test_a_scoped_branch_does_not_cover_another_branch() -> None:
    source = """
async def mixed(conn, space_id, record_id):
    await conn.fetch(
        "(SELECT id FROM contacts WHERE space_id = $1) UNION ALL "
        "(SELECT id FROM interactions WHERE id = $2)",
        space_id,
        record_id,
    )
"""
    assert _unscoped(source) == {("scratch", "mixed", "interactions")}


def test_each_side_of_a_union_names_its_own_space() -> None:
    assert unscoped_tables(
        "SELECT id FROM contacts WHERE space_id = $1 UNION SELECT id FROM settings WHERE id = $2",
        _SCOPED,
    ) == {"settings"}


def test_per_table_sql_is_expanded_over_its_tuple() -> None:
    source = """
TABLES = ("contacts", "interactions")
_LOAD = {t: f"SELECT * FROM {t} WHERE space_id = $1" for t in TABLES}

async def load(conn, table, space_id):
    return await conn.fetch(_LOAD[table], space_id)

async def purge(conn):
    for t in TABLES:
        await conn.execute(f"DELETE FROM {t} WHERE deleted")
"""
    statements = statements_of(source, "scratch")
    assert {s.sql for s in statements if s.function == "load"} == {
        "SELECT * FROM contacts WHERE space_id = $1",
        "SELECT * FROM interactions WHERE space_id = $1",
    }
    assert set(offenders(statements, _SCOPED)) == {
        ("scratch", "purge", "contacts"),
        ("scratch", "purge", "interactions"),
    }


def test_sql_that_cannot_be_read_fails_loudly() -> None:
    source = """
async def dynamic(conn, where):
    await conn.fetch("SELECT * FROM contacts WHERE " + where)
"""
    with pytest.raises(UnreadableSQL, match=r"scratch\.py:3"):
        statements_of(source, "scratch")
