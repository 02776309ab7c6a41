//! What a schema holds, read from PostgreSQL's catalog, in a shape that two schemas can be compared in.

use std::collections::BTreeMap;

use sqlx::PgConnection;

use crate::Result;

/// The tables of one schema.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Tables by name.
    pub tables: BTreeMap<String, Table>,
}

/// One table: its columns, constraints and indexes.
#[derive(Debug, Default)]
pub struct Table {
    /// Columns in attribute order.
    pub columns: Vec<Column>,
    /// Check, foreign-key, unique and primary-key constraints.
    pub constraints: Vec<Constraint>,
    /// Every index, including those that back a unique or primary-key constraint.
    pub indexes: Vec<Index>,
}

/// A column.
#[derive(Debug, Clone)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// `format_type` of the column, e.g. `character varying(20)`.
    pub data_type: String,
    /// Whether the column is `NOT NULL`.
    pub not_null: bool,
    /// The default expression, as PostgreSQL prints it.
    pub default: Option<String>,
    /// Whether the column is an identity column.
    pub identity: bool,
}

/// A constraint.
#[derive(Debug, Clone)]
pub struct Constraint {
    /// Constraint name.
    pub name: String,
    /// `c` check, `f` foreign key, `u` unique, `p` primary key (others are ignored).
    pub kind: char,
    /// `pg_get_constraintdef`, without a trailing `NOT VALID`.
    pub definition: String,
    /// False for a constraint added `NOT VALID` and not validated yet.
    pub validated: bool,
    /// The constrained columns, sorted.
    pub columns: Vec<String>,
    /// For a foreign key: the referenced table.
    pub references: Option<String>,
}

/// An index.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Index {
    /// Index name.
    pub name: String,
    /// Whether it enforces uniqueness.
    pub unique: bool,
    /// Whether it is the primary key.
    pub primary: bool,
    /// False for an index whose concurrent build failed.
    pub valid: bool,
    /// The definition after `USING`, e.g. `btree (customer_user_id, created_at)`: two indexes with the same
    /// definition and uniqueness are equivalent whatever their names.
    pub definition: String,
    /// The constraint this index backs, if any.
    pub constraint: Option<String>,
}

impl Index {
    /// The plain column names of a simple index definition (`btree (a, b DESC)` gives `a, b`).
    pub fn columns(&self) -> Vec<String> {
        let Some(open) = self.definition.find('(') else {
            return Vec::new();
        };
        let mut depth = 0;
        let mut end = self.definition.len();
        for (i, c) in self.definition[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        self.definition[open + 1..end]
            .split(',')
            .filter_map(|part| part.split_whitespace().next().map(str::to_owned))
            .collect()
    }
}

impl Table {
    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[derive(sqlx::FromRow)]
struct ConstraintRow {
    table: String,
    name: String,
    kind: String,
    definition: String,
    validated: bool,
    columns: Vec<String>,
    references: Option<String>,
}

#[derive(sqlx::FromRow)]
struct IndexRow {
    table: String,
    #[sqlx(flatten)]
    index: Index,
}

/// Reads every ordinary table of `schema`.
pub async fn read(conn: &mut PgConnection, schema: &str) -> Result<Catalog> {
    let mut catalog = Catalog::default();

    let columns: Vec<(String, String, String, bool, Option<String>, bool)> = crate::query_as(
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                pg_get_expr(d.adbin, d.adrelid), a.attidentity <> ''
         FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY c.relname, a.attnum",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    for (table, name, data_type, not_null, default, identity) in columns {
        catalog.tables.entry(table).or_default().columns.push(Column { name, data_type, not_null, default, identity });
    }

    let constraints: Vec<ConstraintRow> = crate::query_as(
        "SELECT c.relname::text AS table, k.conname::text AS name, k.contype::text AS kind,
                pg_get_constraintdef(k.oid) AS definition, k.convalidated AS validated,
                ARRAY(SELECT a.attname::text FROM pg_attribute a
                      WHERE a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey) ORDER BY a.attname) AS columns,
                r.relname::text AS references
         FROM pg_constraint k
         JOIN pg_class c ON c.oid = k.conrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_class r ON r.oid = k.confrelid
         WHERE n.nspname = $1 AND k.contype IN ('c', 'f', 'u', 'p')
         ORDER BY c.relname, k.conname",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    for row in constraints {
        catalog.tables.entry(row.table).or_default().constraints.push(Constraint {
            name: row.name,
            kind: row.kind.chars().next().unwrap_or('?'),
            definition: row.definition.trim_end_matches(" NOT VALID").to_owned(),
            validated: row.validated,
            columns: row.columns,
            references: row.references,
        });
    }

    let indexes: Vec<IndexRow> = crate::query_as(
        "SELECT t.relname::text AS table, i.relname::text AS name, x.indisunique AS unique,
                x.indisprimary AS primary, x.indisvalid AS valid,
                regexp_replace(pg_get_indexdef(x.indexrelid), '^.* USING ', '') AS definition,
                (SELECT k.conname::text FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.contype IN ('u', 'p')
                 LIMIT 1) AS constraint
         FROM pg_index x
         JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_class t ON t.oid = x.indrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = $1 AND t.relkind IN ('r', 'p')
         ORDER BY t.relname, i.relname",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    for row in indexes {
        catalog.tables.entry(row.table).or_default().indexes.push(row.index);
    }

    Ok(catalog)
}
