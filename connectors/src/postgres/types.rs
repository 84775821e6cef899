//! Tuple values as SQL parameters and SQL values as tuple values, by the
//! column's type (Storm's `JdbcMapper` with the table's column schema, as
//! `JdbcClient.getColumnSchema` reads it).

use bytes::BytesMut;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use squall_topology_api::Value;
use std::error::Error;

/// The column types Squall maps, by PostgreSQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// `text`, `varchar`, `char`, `name`.
    Text,
    /// `smallint`.
    Int2,
    /// `integer`.
    Int4,
    /// `bigint`.
    Int8,
    /// `real`.
    Float4,
    /// `double precision`.
    Float8,
    /// `boolean`.
    Bool,
    /// `bytea`.
    Bytea,
    /// `json`.
    Json,
    /// `jsonb`.
    Jsonb,
}

impl SqlType {
    /// The type of a column of PostgreSQL type `ty`, if Squall maps it.
    pub fn of(ty: &Type) -> Option<Self> {
        Some(match *ty {
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => SqlType::Text,
            Type::INT2 => SqlType::Int2,
            Type::INT4 => SqlType::Int4,
            Type::INT8 => SqlType::Int8,
            Type::FLOAT4 => SqlType::Float4,
            Type::FLOAT8 => SqlType::Float8,
            Type::BOOL => SqlType::Bool,
            Type::BYTEA => SqlType::Bytea,
            Type::JSON => SqlType::Json,
            Type::JSONB => SqlType::Jsonb,
            _ => return None,
        })
    }

    /// The SQL name, as in a cast (`bigint`).
    pub fn sql(self) -> &'static str {
        match self {
            SqlType::Text => "text",
            SqlType::Int2 => "smallint",
            SqlType::Int4 => "integer",
            SqlType::Int8 => "bigint",
            SqlType::Float4 => "real",
            SqlType::Float8 => "double precision",
            SqlType::Bool => "boolean",
            SqlType::Bytea => "bytea",
            SqlType::Json => "json",
            SqlType::Jsonb => "jsonb",
        }
    }
}

/// A table column: its name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// Its type.
    pub ty: SqlType,
}

/// The columns of `table`, in order, read from a prepared `SELECT`.
///
/// # Errors
/// The server's error (no such table), or a column of a type Squall does
/// not map, named.
pub(crate) fn table_columns(
    client: &mut postgres::Client,
    table: &str,
) -> Result<Vec<Column>, String> {
    let stmt = client
        .prepare(&format!("SELECT * FROM {table} LIMIT 0"))
        .map_err(|e| super::config::describe(&e))?;
    stmt.columns()
        .iter()
        .map(|c| {
            SqlType::of(c.type_())
                .map(|ty| Column {
                    name: c.name().to_owned(),
                    ty,
                })
                .ok_or_else(|| {
                    format!(
                        "column {} of {table} is of type {}, which Squall does not map",
                        c.name(),
                        c.type_()
                    )
                })
        })
        .collect()
}

/// One parameter of a statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Text(Option<String>),
    Int2(Option<i16>),
    Int4(Option<i32>),
    Int8(Option<i64>),
    Float4(Option<f32>),
    Float8(Option<f64>),
    Bool(Option<bool>),
    Bytea(Option<Vec<u8>>),
    Json(Option<serde_json::Value>),
}

fn to_json(v: &Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// `value` as a parameter for `column`.
///
/// # Errors
/// A message naming the column, its type and the value's type.
pub(crate) fn param(value: &Value, column: &Column) -> Result<Param, String> {
    let wrong = || {
        format!(
            "column {} is {}, the value is {} {}",
            column.name,
            column.ty.sql(),
            value.type_name(),
            serde_json::to_string(value).unwrap_or_default()
        )
    };
    let null = matches!(value, Value::Null);
    Ok(match column.ty {
        SqlType::Text => Param::Text(match value {
            Value::Null => None,
            Value::Str(s) => Some(s.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => return Err(wrong()),
        }),
        SqlType::Int2 | SqlType::Int4 | SqlType::Int8 => {
            let i = match value {
                Value::Null => None,
                Value::Int(i) => Some(*i),
                _ => return Err(wrong()),
            };
            match column.ty {
                SqlType::Int2 => {
                    Param::Int2(i.map(i16::try_from).transpose().map_err(|_| wrong())?)
                }
                SqlType::Int4 => {
                    Param::Int4(i.map(i32::try_from).transpose().map_err(|_| wrong())?)
                }
                _ => Param::Int8(i),
            }
        }
        SqlType::Float4 | SqlType::Float8 => {
            let f = match value {
                Value::Null => None,
                Value::Float(f) => Some(*f),
                Value::Int(i) => Some(*i as f64),
                _ => return Err(wrong()),
            };
            if column.ty == SqlType::Float4 {
                Param::Float4(f.map(|f| f as f32))
            } else {
                Param::Float8(f)
            }
        }
        SqlType::Bool => Param::Bool(match value {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            _ => return Err(wrong()),
        }),
        SqlType::Bytea => Param::Bytea(match value {
            Value::Null => None,
            Value::Bytes(b) => Some(b.clone()),
            Value::Str(s) => Some(s.as_bytes().to_vec()),
            _ => return Err(wrong()),
        }),
        SqlType::Json | SqlType::Jsonb => Param::Json((!null).then(|| to_json(value))),
    })
}

/// The value of column `i` of `row`, of type `ty`.
///
/// # Errors
/// The client's error when the column does not decode.
pub(crate) fn read(row: &postgres::Row, i: usize, ty: SqlType) -> Result<Value, String> {
    let e = |e: postgres::Error| super::config::describe(&e);
    Ok(match ty {
        SqlType::Text => row
            .try_get::<_, Option<String>>(i)
            .map_err(e)?
            .map(Value::from),
        SqlType::Int2 => row
            .try_get::<_, Option<i16>>(i)
            .map_err(e)?
            .map(|v| Value::Int(v.into())),
        SqlType::Int4 => row
            .try_get::<_, Option<i32>>(i)
            .map_err(e)?
            .map(|v| Value::Int(v.into())),
        SqlType::Int8 => row.try_get::<_, Option<i64>>(i).map_err(e)?.map(Value::Int),
        SqlType::Float4 => row
            .try_get::<_, Option<f32>>(i)
            .map_err(e)?
            .map(|v| Value::Float(v.into())),
        SqlType::Float8 => row
            .try_get::<_, Option<f64>>(i)
            .map_err(e)?
            .map(Value::Float),
        SqlType::Bool => row
            .try_get::<_, Option<bool>>(i)
            .map_err(e)?
            .map(Value::Bool),
        SqlType::Bytea => row
            .try_get::<_, Option<Vec<u8>>>(i)
            .map_err(e)?
            .map(Value::Bytes),
        SqlType::Json | SqlType::Jsonb => row
            .try_get::<_, Option<serde_json::Value>>(i)
            .map_err(e)?
            .map(|j| serde_json::from_value(j).unwrap_or(Value::Null)),
    }
    .unwrap_or(Value::Null))
}

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Param::Text(v) => v.to_sql(ty, out),
            Param::Int2(v) => v.to_sql(ty, out),
            Param::Int4(v) => v.to_sql(ty, out),
            Param::Int8(v) => v.to_sql(ty, out),
            Param::Float4(v) => v.to_sql(ty, out),
            Param::Float8(v) => v.to_sql(ty, out),
            Param::Bool(v) => v.to_sql(ty, out),
            Param::Bytea(v) => v.to_sql(ty, out),
            Param::Json(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A column of parameters, sent as one array (`unnest`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ParamArray {
    Text(Vec<Option<String>>),
    Int2(Vec<Option<i16>>),
    Int4(Vec<Option<i32>>),
    Int8(Vec<Option<i64>>),
    Float4(Vec<Option<f32>>),
    Float8(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Bytea(Vec<Option<Vec<u8>>>),
    Json(Vec<Option<serde_json::Value>>),
}

impl ParamArray {
    /// The parameters `params` (all of one column's type) as one array.
    pub(crate) fn of(ty: SqlType, params: impl Iterator<Item = Param>) -> Self {
        macro_rules! collect {
            ($variant:ident) => {
                ParamArray::$variant(
                    params
                        .map(|p| match p {
                            Param::$variant(v) => v,
                            _ => None,
                        })
                        .collect(),
                )
            };
        }
        match ty {
            SqlType::Text => collect!(Text),
            SqlType::Int2 => collect!(Int2),
            SqlType::Int4 => collect!(Int4),
            SqlType::Int8 => collect!(Int8),
            SqlType::Float4 => collect!(Float4),
            SqlType::Float8 => collect!(Float8),
            SqlType::Bool => collect!(Bool),
            SqlType::Bytea => collect!(Bytea),
            SqlType::Json | SqlType::Jsonb => collect!(Json),
        }
    }
}

impl ToSql for ParamArray {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            ParamArray::Text(v) => v.to_sql(ty, out),
            ParamArray::Int2(v) => v.to_sql(ty, out),
            ParamArray::Int4(v) => v.to_sql(ty, out),
            ParamArray::Int8(v) => v.to_sql(ty, out),
            ParamArray::Float4(v) => v.to_sql(ty, out),
            ParamArray::Float8(v) => v.to_sql(ty, out),
            ParamArray::Bool(v) => v.to_sql(ty, out),
            ParamArray::Bytea(v) => v.to_sql(ty, out),
            ParamArray::Json(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(ty: SqlType) -> Column {
        Column {
            name: "delay".into(),
            ty,
        }
    }

    #[test]
    fn values_become_parameters_of_their_column_type_or_an_error_naming_it() {
        assert_eq!(
            param(&Value::Int(5), &col(SqlType::Int4)),
            Ok(Param::Int4(Some(5)))
        );
        assert_eq!(
            param(&Value::Null, &col(SqlType::Int8)),
            Ok(Param::Int8(None))
        );
        assert_eq!(
            param(&Value::Int(2), &col(SqlType::Float8)),
            Ok(Param::Float8(Some(2.0)))
        );
        let e = param(&Value::from("abc"), &col(SqlType::Int4)).unwrap_err();
        assert_eq!(e, "column delay is integer, the value is string \"abc\"");
        let e = param(&Value::Int(1 << 40), &col(SqlType::Int4)).unwrap_err();
        assert!(e.starts_with("column delay is integer"), "{e}");
    }
}
