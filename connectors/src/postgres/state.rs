//! Trident map states in a PostgreSQL table (Storm's `JdbcState`, with
//! Trident's txids): one row per key, the value in its value columns,
//! the txid that wrote it in `txid` and, opaque, the value before it in
//! `prev_<column>`. A batch's upserts are one statement, so they and
//! their txids commit in one SQL transaction.

use super::types::{param, read, table_columns, Column, Param, ParamArray, SqlType};
use super::PostgresConfig;
use squall_topology_api::Value;
use squall_trident::state::{OpaqueValue, SemanticMap, StatePartition, Stored, TransactionalValue};
use squall_trident::{Key, MapState, Semantics, StateError, StateFactory};
use std::collections::HashMap;

/// A Trident map state in the PostgreSQL table `table`: the grouping
/// fields' values in `key_columns` (the primary key), the state's value
/// in `value_columns` (a list value spread over several), the txid in
/// `txid`, and for opaque semantics the previous value in `prev_<value
/// column>` (null when the key was new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresMapState {
    /// The database.
    pub database: PostgresConfig,
    /// The table.
    pub table: String,
    /// The key columns, in grouping-field order.
    pub key_columns: Vec<String>,
    /// The value columns.
    pub value_columns: Vec<String>,
    /// Replay semantics (default transactional).
    pub semantics: Semantics,
}

impl PostgresMapState {
    /// A transactional state in `table`.
    pub fn new(database: PostgresConfig, table: &str, keys: &[&str], values: &[&str]) -> Self {
        Self {
            database,
            table: table.to_owned(),
            key_columns: keys.iter().map(|k| (*k).to_owned()).collect(),
            value_columns: values.iter().map(|v| (*v).to_owned()).collect(),
            semantics: Semantics::Transactional,
        }
    }

    /// The same state with `semantics`.
    pub fn with_semantics(mut self, semantics: Semantics) -> Self {
        self.semantics = semantics;
        self
    }

    /// The `CREATE TABLE IF NOT EXISTS` of this state's table, with the
    /// key and value columns of types `key_types` and `value_types`.
    pub fn create_table_sql(&self, key_types: &[SqlType], value_types: &[SqlType]) -> String {
        let mut cols: Vec<String> = Vec::new();
        for (c, t) in self.key_columns.iter().zip(key_types) {
            cols.push(format!("{c} {} NOT NULL", t.sql()));
        }
        for (c, t) in self.value_columns.iter().zip(value_types) {
            cols.push(format!("{c} {}", t.sql()));
        }
        cols.push("txid bigint".to_owned());
        for (c, t) in self.value_columns.iter().zip(value_types) {
            cols.push(format!("prev_{c} {}", t.sql()));
        }
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
            self.table,
            cols.join(", "),
            self.key_columns.join(", ")
        )
    }

    /// Creates the table if it does not exist (see
    /// [`create_table_sql`](Self::create_table_sql)).
    ///
    /// # Errors
    /// [`StateError::Backend`] naming the server and the cause.
    pub fn create_table(
        &self,
        key_types: &[SqlType],
        value_types: &[SqlType],
    ) -> Result<(), StateError> {
        let mut client = self.database.connect().map_err(StateError::Backend)?;
        client
            .batch_execute(&self.create_table_sql(key_types, value_types))
            .map_err(|e| StateError::Backend(self.database.error(&e)))
    }

    /// Every key's latest value.
    ///
    /// # Errors
    /// [`StateError::Backend`] naming the server and the cause.
    pub fn read_all(&self) -> Result<HashMap<Key, Value>, StateError> {
        let map = PostgresBackingMap::open(self.clone())?;
        map.read_all()
    }
}

impl StateFactory for PostgresMapState {
    fn make_state(&self, _partition: &StatePartition) -> Result<Box<dyn MapState>, StateError> {
        let map = PostgresBackingMap::open(self.clone())?;
        Ok(Box::new(SemanticMap::new(self.semantics, map)))
    }
}

struct Statements {
    keys: Vec<Column>,
    values: Vec<Column>,
    select: postgres::Statement,
    upsert: postgres::Statement,
}

/// The rows of a [`PostgresMapState`]: one connection, made again after an
/// error (the commit in progress fails and its batch replays), with its
/// statements prepared once per connection.
pub struct PostgresBackingMap {
    state: PostgresMapState,
    client: Option<(postgres::Client, Statements)>,
}

impl PostgresBackingMap {
    /// Connects and prepares the statements.
    ///
    /// # Errors
    /// [`StateError::Backend`] naming the server and the cause (a missing
    /// table or column included).
    pub fn open(state: PostgresMapState) -> Result<Self, StateError> {
        let mut map = Self {
            state,
            client: None,
        };
        map.connection()?;
        Ok(map)
    }

    fn backend(&self, e: impl std::fmt::Display) -> StateError {
        StateError::Backend(format!(
            "{}: table {}: {e}",
            self.state.database.server(),
            self.state.table
        ))
    }

    fn connection(&mut self) -> Result<&mut (postgres::Client, Statements), StateError> {
        if self.client.is_none() {
            let mut client = self.state.database.connect().map_err(StateError::Backend)?;
            let all = table_columns(&mut client, &self.state.table).map_err(|e| self.backend(e))?;
            let find = |name: &str| {
                all.iter()
                    .find(|c| c.name == name)
                    .cloned()
                    .ok_or_else(|| self.backend(format!("no column {name}")))
            };
            let keys: Vec<Column> = self
                .state
                .key_columns
                .iter()
                .map(|k| find(k))
                .collect::<Result<_, _>>()?;
            let values: Vec<Column> = self
                .state
                .value_columns
                .iter()
                .map(|v| find(v))
                .collect::<Result<_, _>>()?;
            find("txid")?;
            let opaque = self.state.semantics == Semantics::Opaque;
            if opaque {
                for v in &values {
                    find(&format!("prev_{}", v.name))?;
                }
            }
            let (select, upsert) = self.sql(&keys, &values);
            let prepare = |client: &mut postgres::Client, sql: &str| {
                client
                    .prepare(sql)
                    .map_err(|e| self.backend(super::config::describe(&e)))
            };
            let select = prepare(&mut client, &select)?;
            let upsert = prepare(&mut client, &upsert)?;
            self.client = Some((
                client,
                Statements {
                    keys,
                    values,
                    select,
                    upsert,
                },
            ));
        }
        Ok(self.client.as_mut().expect("just connected"))
    }

    /// The lookup and upsert statements.
    fn sql(&self, keys: &[Column], values: &[Column]) -> (String, String) {
        let t = &self.state.table;
        let arrays = |cols: &[&Column], from: usize| -> Vec<String> {
            cols.iter()
                .enumerate()
                .map(|(i, c)| format!("${}::{}[]", from + i, c.ty.sql()))
                .collect()
        };
        let key_refs: Vec<&Column> = keys.iter().collect();
        let u: Vec<String> = (0..keys.len()).map(|i| format!("q{i}")).collect();
        let on: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("t.{} = u.q{i}", k.name))
            .collect();
        let mut selected: Vec<String> = vec!["u.ord".to_owned()];
        selected.extend(values.iter().map(|v| format!("t.{}", v.name)));
        selected.push("t.txid".to_owned());
        if self.state.semantics == Semantics::Opaque {
            selected.extend(values.iter().map(|v| format!("t.prev_{}", v.name)));
        }
        let select = format!(
            "SELECT {} FROM unnest({}) WITH ORDINALITY AS u({}, ord) JOIN {t} t ON {}",
            selected.join(", "),
            arrays(&key_refs, 1).join(", "),
            u.join(", "),
            on.join(" AND ")
        );
        let mut written: Vec<&Column> = keys.iter().chain(values).collect();
        let mut names: Vec<String> = written.iter().map(|c| c.name.clone()).collect();
        names.push("txid".to_owned());
        let txid = Column {
            name: "txid".into(),
            ty: SqlType::Int8,
        };
        written.push(&txid);
        let prevs: Vec<Column> = values
            .iter()
            .map(|v| Column {
                name: format!("prev_{}", v.name),
                ty: v.ty,
            })
            .collect();
        if self.state.semantics == Semantics::Opaque {
            written.extend(prevs.iter());
            names.extend(prevs.iter().map(|p| p.name.clone()));
        }
        let updates: Vec<String> = names[keys.len()..]
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let upsert = format!(
            "INSERT INTO {t} ({}) SELECT * FROM unnest({}) ON CONFLICT ({}) DO UPDATE SET {}",
            names.join(", "),
            arrays(&written, 1).join(", "),
            self.state.key_columns.join(", "),
            updates.join(", ")
        );
        (select, upsert)
    }

    /// Runs `f` with the connection; drops it when the connection failed.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&mut postgres::Client, &Statements) -> Result<T, postgres::Error>,
    ) -> Result<T, StateError> {
        let (client, statements) = self.connection()?;
        let result = f(client, statements);
        result.map_err(|e| {
            if self.client.as_ref().is_none_or(|(c, _)| c.is_closed()) || e.as_db_error().is_none()
            {
                self.client = None;
            }
            self.backend(super::config::describe(&e))
        })
    }

    /// The value of a row from column `from` on: one column's value, or a
    /// list of several.
    fn value_at(
        &self,
        row: &postgres::Row,
        from: usize,
        cols: &[Column],
    ) -> Result<Value, StateError> {
        let mut vals = Vec::with_capacity(cols.len());
        for (i, c) in cols.iter().enumerate() {
            vals.push(read(row, from + i, c.ty).map_err(|e| self.backend(e))?);
        }
        Ok(if vals.len() == 1 {
            vals.pop().unwrap_or_default()
        } else {
            Value::List(vals)
        })
    }

    /// The values of `value` for the value columns.
    fn spread(&self, value: &Value, cols: &[Column]) -> Result<Vec<Param>, StateError> {
        let parts: Vec<&Value> = if cols.len() == 1 {
            vec![value]
        } else {
            match value {
                Value::List(l) if l.len() == cols.len() => l.iter().collect(),
                Value::Null => vec![value; cols.len()],
                other => {
                    return Err(self.backend(format!(
                        "a {} value for {} value columns (needs a list of {})",
                        other.type_name(),
                        cols.len(),
                        cols.len()
                    )))
                }
            }
        };
        parts
            .into_iter()
            .zip(cols)
            .map(|(v, c)| param(v, c).map_err(|e| self.backend(e)))
            .collect()
    }

    fn read_all(mut self) -> Result<HashMap<Key, Value>, StateError> {
        let sql = format!(
            "SELECT {}, {} FROM {}",
            self.state.key_columns.join(", "),
            self.state.value_columns.join(", "),
            self.state.table
        );
        let rows = self.call(|c, _| c.query(&sql, &[]))?;
        let (_, st) = self.connection()?;
        let (keys, values) = (st.keys.clone(), st.values.clone());
        let mut out = HashMap::with_capacity(rows.len());
        for row in rows {
            let mut key = squall_topology_api::Values::new();
            for (i, k) in keys.iter().enumerate() {
                key.push(read(&row, i, k.ty).map_err(|e| self.backend(e))?);
            }
            out.insert(Key(key), self.value_at(&row, keys.len(), &values)?);
        }
        Ok(out)
    }
}

impl squall_trident::state::BackingMap for PostgresBackingMap {
    fn multi_get(&mut self, keys: &[Key]) -> Result<Vec<Option<Stored>>, StateError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (_, st) = self.connection()?;
        let (kcols, vcols) = (st.keys.clone(), st.values.clone());
        let mut arrays = Vec::with_capacity(kcols.len());
        for (i, c) in kcols.iter().enumerate() {
            let params: Vec<Param> = keys
                .iter()
                .map(|k| param(k.0.get(i).unwrap_or(&Value::Null), c).map_err(|e| self.backend(e)))
                .collect::<Result<_, _>>()?;
            arrays.push(ParamArray::of(c.ty, params.into_iter()));
        }
        let rows = self.call(|client, st| {
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = arrays
                .iter()
                .map(|a| a as &(dyn postgres::types::ToSql + Sync))
                .collect();
            client.query(&st.select, &params)
        })?;
        let mut out: Vec<Option<Stored>> = vec![None; keys.len()];
        let n = vcols.len();
        for row in rows {
            let ord: i64 = row.try_get(0).map_err(|e| self.backend(e))?;
            let value = self.value_at(&row, 1, &vcols)?;
            let txid: Option<i64> = row.try_get(n + 1).map_err(|e| self.backend(e))?;
            let stored = match self.state.semantics {
                Semantics::NonTransactional => Stored::Plain(value),
                Semantics::Transactional => Stored::Transactional(TransactionalValue {
                    txid: txid.unwrap_or(0) as u64,
                    value,
                }),
                Semantics::Opaque => {
                    let prev = self.value_at(&row, n + 2, &vcols)?;
                    let none = match &prev {
                        Value::Null => true,
                        Value::List(l) => l.iter().all(|v| matches!(v, Value::Null)),
                        _ => false,
                    };
                    Stored::Opaque(OpaqueValue {
                        curr_txid: txid.unwrap_or(0) as u64,
                        curr: value,
                        prev: (!none).then_some(prev),
                    })
                }
            };
            if let Some(slot) = usize::try_from(ord - 1).ok().and_then(|i| out.get_mut(i)) {
                *slot = Some(stored);
            }
        }
        Ok(out)
    }

    fn multi_put(&mut self, entries: &[(Key, Stored)]) -> Result<(), StateError> {
        if entries.is_empty() {
            return Ok(());
        }
        let (_, st) = self.connection()?;
        let (kcols, vcols) = (st.keys.clone(), st.values.clone());
        let mut columns: Vec<Vec<Param>> = Vec::new();
        let txid_col = Column {
            name: "txid".into(),
            ty: SqlType::Int8,
        };
        let mut types: Vec<SqlType> = kcols.iter().chain(&vcols).map(|c| c.ty).collect();
        types.push(SqlType::Int8);
        if self.state.semantics == Semantics::Opaque {
            types.extend(vcols.iter().map(|c| c.ty));
        }
        columns.resize_with(types.len(), Vec::new);
        for (key, stored) in entries {
            let mut row: Vec<Param> = Vec::with_capacity(types.len());
            for (i, c) in kcols.iter().enumerate() {
                row.push(
                    param(key.0.get(i).unwrap_or(&Value::Null), c).map_err(|e| self.backend(e))?,
                );
            }
            let (value, txid, prev) = match stored {
                Stored::Plain(v) => (v, None, None),
                Stored::Transactional(t) => (&t.value, Some(t.txid), None),
                Stored::Opaque(o) => (&o.curr, Some(o.curr_txid), Some(o.prev.clone())),
            };
            row.extend(self.spread(value, &vcols)?);
            row.push(
                param(
                    &txid.map_or(Value::Null, |t| Value::Int(t as i64)),
                    &txid_col,
                )
                .map_err(|e| self.backend(e))?,
            );
            if self.state.semantics == Semantics::Opaque {
                let prev = prev.flatten().unwrap_or(Value::Null);
                row.extend(self.spread(&prev, &vcols)?);
            }
            for (col, p) in columns.iter_mut().zip(row) {
                col.push(p);
            }
        }
        let arrays: Vec<ParamArray> = types
            .iter()
            .zip(columns)
            .map(|(t, c)| ParamArray::of(*t, c.into_iter()))
            .collect();
        self.call(|client, st| {
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = arrays
                .iter()
                .map(|a| a as &(dyn postgres::types::ToSql + Sync))
                .collect();
            client.execute(&st.upsert, &params).map(|_| ())
        })
    }
}
