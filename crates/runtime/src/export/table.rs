//! A Parquet file of nested rows, for the training layouts other tools load with `datasets` and
//! pyarrow (TRL, verl): a schema of strings, bytes, numbers, structs and lists, rows as
//! [`Cell`] trees, shredded into Parquet's columns with their definition and repetition levels
//! (the Dremel encoding), written a row group at a time so memory holds only one group's
//! screenshots. Every field is optional and every list uses the standard three-level LIST
//! layout, as pyarrow and `datasets` write them; Hugging Face's feature description can ride
//! along in the file's metadata under `huggingface`, where `datasets` looks for it.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use crate::RuntimeError;

/// A column's type in the schema.
#[derive(Debug, Clone)]
pub(crate) enum Field {
    /// UTF-8 text.
    Str(&'static str),
    /// Raw bytes (an encoded image).
    Bytes(&'static str),
    /// A 64-bit integer.
    Int(&'static str),
    /// A 64-bit float.
    Float(&'static str),
    /// A boolean.
    Bool(&'static str),
    /// Named fields.
    Struct(&'static str, Vec<Field>),
    /// A list of the inner field (its name is ignored; Parquet calls it `element`).
    List(&'static str, Box<Field>),
    /// An encoded image as `datasets` stores one: a struct of `bytes` and `path`, described
    /// as an `Image` feature so that it loads as a picture.
    Image(&'static str),
}

/// One value of a row, shaped like its [`Field`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    /// No value (every field is optional).
    Null,
    /// Text.
    Str(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A struct's fields, in the schema's order.
    Struct(Vec<Cell>),
    /// A list's items.
    List(Vec<Cell>),
}

impl Field {
    fn name(&self) -> &'static str {
        match self {
            Field::Str(n)
            | Field::Bytes(n)
            | Field::Int(n)
            | Field::Float(n)
            | Field::Bool(n)
            | Field::Struct(n, _)
            | Field::List(n, _)
            | Field::Image(n) => n,
        }
    }

    /// The field in Parquet's schema language, `name` given (a list item is `element`).
    fn message(&self, name: &str, out: &mut String) {
        match self {
            Field::Str(_) => out.push_str(&format!("optional binary {name} (STRING);\n")),
            Field::Bytes(_) => out.push_str(&format!("optional binary {name};\n")),
            Field::Int(_) => out.push_str(&format!("optional int64 {name};\n")),
            Field::Float(_) => out.push_str(&format!("optional double {name};\n")),
            Field::Bool(_) => out.push_str(&format!("optional boolean {name};\n")),
            Field::Image(_) => out.push_str(&format!(
                "optional group {name} {{\noptional binary bytes;\noptional binary path (STRING);\n}}\n"
            )),
            Field::Struct(_, fields) => {
                out.push_str(&format!("optional group {name} {{\n"));
                for f in fields {
                    f.message(f.name(), out);
                }
                out.push_str("}\n");
            }
            Field::List(_, item) => {
                out.push_str(&format!(
                    "optional group {name} (LIST) {{\nrepeated group list {{\n"
                ));
                item.message("element", out);
                out.push_str("}\n}\n");
            }
        }
    }

    /// How many leaf columns the field has.
    fn leaves(&self) -> usize {
        match self {
            Field::Struct(_, fields) => fields.iter().map(Field::leaves).sum(),
            Field::List(_, item) => item.leaves(),
            Field::Image(_) => 2,
            _ => 1,
        }
    }

    /// The field as Hugging Face `datasets` describes features (`Value`, `List`, `Image`, a
    /// struct as a plain object), for the file's `huggingface` metadata.
    fn feature(&self) -> serde_json::Value {
        use serde_json::json;
        let value = |dtype: &str| json!({"dtype": dtype, "_type": "Value"});
        match self {
            Field::Str(_) => value("string"),
            Field::Bytes(_) => value("binary"),
            Field::Int(_) => value("int64"),
            Field::Float(_) => value("float64"),
            Field::Bool(_) => value("bool"),
            Field::Image(_) => json!({"_type": "Image"}),
            Field::Struct(_, fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .map(|f| (f.name().to_owned(), f.feature()))
                    .collect(),
            ),
            Field::List(_, item) => json!({"feature": item.feature(), "_type": "List"}),
        }
    }
}

/// The `huggingface` metadata entry that makes `datasets` load the columns as `fields` say
/// (images as pictures rather than structs of bytes).
pub(crate) fn hf_metadata(fields: &[Field]) -> (String, String) {
    let features: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|f| (f.name().to_owned(), f.feature()))
        .collect();
    (
        "huggingface".into(),
        serde_json::json!({"info": {"features": features}}).to_string(),
    )
}

/// One leaf column's levels and values for the current row group.
#[derive(Default)]
struct Column {
    def: Vec<i16>,
    rep: Vec<i16>,
    max_def: i16,
    max_rep: i16,
    bytes: Vec<ByteArray>,
    ints: Vec<i64>,
    floats: Vec<f64>,
    bools: Vec<bool>,
}

/// Writes rows of `fields` to a Parquet file, `group_rows` rows per row group.
pub(crate) struct TableWriter {
    fields: Vec<Field>,
    columns: Vec<Column>,
    rows: usize,
    group_rows: usize,
    writer: SerializedFileWriter<File>,
    path: std::path::PathBuf,
}

fn failed(path: &Path, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::External {
        program: "export".into(),
        detail: format!("writing {}: {e}", path.display()),
    }
}

impl TableWriter {
    /// A new file at `path` with `fields` as its columns and `metadata` as key-value pairs.
    pub(crate) fn create(
        path: &Path,
        fields: Vec<Field>,
        metadata: Vec<(String, String)>,
        group_rows: usize,
    ) -> Result<Self, RuntimeError> {
        let mut message = String::from("message schema {\n");
        for f in &fields {
            f.message(f.name(), &mut message);
        }
        message.push_str("}\n");
        let schema = Arc::new(parse_message_type(&message).map_err(|e| failed(path, e))?);
        let props = WriterProperties::builder()
            .set_compression(Compression::UNCOMPRESSED)
            .set_created_by(format!("clawdesk {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(
                metadata
                    .into_iter()
                    .map(|(k, v)| KeyValue::new(k, v))
                    .collect(),
            ))
            .build();
        let file = File::create(path).map_err(|e| failed(path, e))?;
        let writer = SerializedFileWriter::new(file, schema.clone(), Arc::new(props))
            .map_err(|e| failed(path, e))?;
        let mut columns = Vec::new();
        for f in &fields {
            levels(f, 0, 0, &mut columns);
        }
        debug_assert_eq!(
            columns.len(),
            fields.iter().map(Field::leaves).sum::<usize>()
        );
        Ok(TableWriter {
            fields,
            columns,
            rows: 0,
            group_rows: group_rows.max(1),
            writer,
            path: path.to_path_buf(),
        })
    }

    /// Adds a row: one cell per field, in the schema's order.
    pub(crate) fn push(&mut self, row: Vec<Cell>) -> Result<(), RuntimeError> {
        if row.len() != self.fields.len() {
            return Err(failed(
                &self.path,
                format!(
                    "a row of {} cells for {} fields",
                    row.len(),
                    self.fields.len()
                ),
            ));
        }
        let mut at = 0;
        for (field, cell) in self.fields.iter().zip(&row) {
            shred(field, cell, 0, 0, 0, &mut self.columns, &mut at)
                .map_err(|e| failed(&self.path, e))?;
        }
        self.rows += 1;
        if self.rows >= self.group_rows {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the rows held so far as a row group.
    fn flush(&mut self) -> Result<(), RuntimeError> {
        if self.rows == 0 {
            return Ok(());
        }
        let path = self.path.clone();
        let mut group = self.writer.next_row_group().map_err(|e| failed(&path, e))?;
        for column in &mut self.columns {
            let Some(mut writer) = group.next_column().map_err(|e| failed(&path, e))? else {
                return Err(failed(
                    &path,
                    "fewer columns in the file than in the schema",
                ));
            };
            let def = (column.max_def > 0).then_some(column.def.as_slice());
            let rep = (column.max_rep > 0).then_some(column.rep.as_slice());
            let written = match writer.untyped() {
                parquet::column::writer::ColumnWriter::ByteArrayColumnWriter(_) => writer
                    .typed::<ByteArrayType>()
                    .write_batch(&column.bytes, def, rep),
                parquet::column::writer::ColumnWriter::Int64ColumnWriter(_) => writer
                    .typed::<Int64Type>()
                    .write_batch(&column.ints, def, rep),
                parquet::column::writer::ColumnWriter::DoubleColumnWriter(_) => writer
                    .typed::<DoubleType>()
                    .write_batch(&column.floats, def, rep),
                parquet::column::writer::ColumnWriter::BoolColumnWriter(_) => writer
                    .typed::<BoolType>()
                    .write_batch(&column.bools, def, rep),
                _ => return Err(failed(&path, "a column type this writer does not write")),
            };
            written.map_err(|e| failed(&path, e))?;
            writer.close().map_err(|e| failed(&path, e))?;
            let (max_def, max_rep) = (column.max_def, column.max_rep);
            *column = Column {
                max_def,
                max_rep,
                ..Column::default()
            };
        }
        group.close().map_err(|e| failed(&path, e))?;
        self.rows = 0;
        Ok(())
    }

    /// Writes what is left and the file's footer.
    pub(crate) fn finish(mut self) -> Result<(), RuntimeError> {
        self.flush()?;
        let path = self.path.clone();
        self.writer.close().map_err(|e| failed(&path, e))?;
        Ok(())
    }
}

/// Each leaf column's highest definition and repetition levels, depth first.
fn levels(field: &Field, def: i16, rep: i16, out: &mut Vec<Column>) {
    let def = def + 1; // every field is optional
    match field {
        Field::Struct(_, fields) => {
            for f in fields {
                levels(f, def, rep, out);
            }
        }
        Field::List(_, item) => levels(item, def + 1, rep + 1, out),
        Field::Image(_) => {
            levels(&Field::Bytes("bytes"), def, rep, out);
            levels(&Field::Str("path"), def, rep, out);
        }
        _ => out.push(Column {
            max_def: def,
            max_rep: rep,
            ..Column::default()
        }),
    }
}

/// Records `cell` under `field`: `def` levels are defined above it, `rep` is the repetition
/// level of this entry, `depth` the number of lists above it; `at` walks the leaf columns.
fn shred(
    field: &Field,
    cell: &Cell,
    def: i16,
    rep: i16,
    depth: i16,
    columns: &mut [Column],
    at: &mut usize,
) -> Result<(), String> {
    if *cell == Cell::Null {
        for column in &mut columns[*at..*at + field.leaves()] {
            column.def.push(def);
            column.rep.push(rep);
        }
        *at += field.leaves();
        return Ok(());
    }
    let def = def + 1;
    let mismatch = || format!("{:?} does not fit the field {}", cell, field.name());
    match (field, cell) {
        (Field::Struct(_, fields), Cell::Struct(cells)) if fields.len() == cells.len() => {
            for (f, c) in fields.iter().zip(cells) {
                shred(f, c, def, rep, depth, columns, at)?;
            }
        }
        (Field::Image(_), Cell::Struct(cells)) if cells.len() == 2 => {
            shred(
                &Field::Bytes("bytes"),
                &cells[0],
                def,
                rep,
                depth,
                columns,
                at,
            )?;
            shred(&Field::Str("path"), &cells[1], def, rep, depth, columns, at)?;
        }
        (Field::List(_, item), Cell::List(items)) => {
            if items.is_empty() {
                for column in &mut columns[*at..*at + item.leaves()] {
                    column.def.push(def);
                    column.rep.push(rep);
                }
                *at += item.leaves();
                return Ok(());
            }
            let start = *at;
            for (i, c) in items.iter().enumerate() {
                *at = start;
                let r = if i == 0 { rep } else { depth + 1 };
                shred(item, c, def + 1, r, depth + 1, columns, at)?;
            }
        }
        (leaf, value) => {
            let column = &mut columns[*at];
            match (leaf, value) {
                (Field::Str(_), Cell::Str(s)) => column.bytes.push(ByteArray::from(s.as_str())),
                (Field::Bytes(_), Cell::Bytes(b)) => column.bytes.push(ByteArray::from(b.clone())),
                (Field::Int(_), Cell::Int(n)) => column.ints.push(*n),
                (Field::Float(_), Cell::Float(x)) => column.floats.push(*x),
                (Field::Bool(_), Cell::Bool(b)) => column.bools.push(*b),
                _ => return Err(mismatch()),
            }
            column.def.push(def);
            column.rep.push(rep);
            *at += 1;
        }
    }
    Ok(())
}

/// Text, or null.
pub(crate) fn opt_str(s: Option<impl Into<String>>) -> Cell {
    s.map_or(Cell::Null, |s| Cell::Str(s.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn schema() -> Vec<Field> {
        let part = Field::Struct("part", vec![Field::Str("type"), Field::Str("text")]);
        let message = Field::Struct(
            "message",
            vec![Field::Str("role"), Field::List("content", Box::new(part))],
        );
        vec![
            Field::List("prompt", Box::new(message)),
            Field::List("images", Box::new(Field::Image("image"))),
            Field::Float("reward"),
            Field::Bool("label"),
            Field::Int("step"),
        ]
    }

    fn part(kind: &str, text: Option<&str>) -> Cell {
        Cell::Struct(vec![Cell::Str(kind.into()), opt_str(text)])
    }

    #[test]
    fn nested_rows_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let mut w =
            TableWriter::create(&path, schema(), vec![("k".into(), "v".into())], 2).unwrap();
        let rows = vec![
            vec![
                Cell::List(vec![
                    Cell::Struct(vec![
                        Cell::Str("system".into()),
                        Cell::List(vec![part("text", Some("Be brief."))]),
                    ]),
                    Cell::Struct(vec![
                        Cell::Str("user".into()),
                        Cell::List(vec![part("image", None), part("text", Some("Where?"))]),
                    ]),
                ]),
                Cell::List(vec![Cell::Struct(vec![
                    Cell::Bytes(vec![1, 2, 3]),
                    Cell::Str("a.png".into()),
                ])]),
                Cell::Float(1.0),
                Cell::Bool(true),
                Cell::Int(7),
            ],
            // Empty lists, a message with no parts, and nulls.
            vec![
                Cell::List(vec![Cell::Struct(vec![
                    Cell::Str("user".into()),
                    Cell::List(vec![]),
                ])]),
                Cell::List(vec![]),
                Cell::Null,
                Cell::Null,
                Cell::Int(8),
            ],
            vec![
                Cell::Null,
                Cell::List(vec![
                    Cell::Struct(vec![Cell::Bytes(vec![9]), Cell::Null]),
                    Cell::Struct(vec![Cell::Bytes(vec![]), Cell::Str("c.png".into())]),
                ]),
                Cell::Float(-1.0),
                Cell::Bool(false),
                Cell::Int(9),
            ],
        ];
        for row in &rows {
            w.push(row.clone()).unwrap();
        }
        w.finish().unwrap();

        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let meta = reader.metadata().file_metadata();
        assert_eq!(meta.num_rows(), 3);
        assert_eq!(reader.metadata().num_row_groups(), 2, "two rows per group");
        let kv = meta.key_value_metadata().unwrap();
        assert!(
            kv.iter()
                .any(|p| p.key == "k" && p.value.as_deref() == Some("v"))
        );
        let read: Vec<String> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().to_json_value().to_string())
            .collect();
        assert_eq!(
            read[0],
            r#"{"prompt":[{"role":"system","content":[{"type":"text","text":"Be brief."}]},{"role":"user","content":[{"type":"image","text":null},{"type":"text","text":"Where?"}]}],"images":[{"bytes":"AQID","path":"a.png"}],"reward":1.0,"label":true,"step":7}"#
        );
        assert_eq!(
            read[1],
            r#"{"prompt":[{"role":"user","content":[]}],"images":[],"reward":null,"label":null,"step":8}"#
        );
        assert_eq!(
            read[2],
            r#"{"prompt":null,"images":[{"bytes":"CQ==","path":null},{"bytes":"","path":"c.png"}],"reward":-1.0,"label":false,"step":9}"#
        );
    }

    #[test]
    fn features_describe_images_as_pictures() {
        let (key, value) = hf_metadata(&schema());
        assert_eq!(key, "huggingface");
        let v: serde_json::Value = serde_json::from_str(&value).unwrap();
        let f = &v["info"]["features"];
        assert_eq!(
            f["images"],
            serde_json::json!({"feature": {"_type": "Image"}, "_type": "List"})
        );
        assert_eq!(f["prompt"]["feature"]["role"]["dtype"], "string");
        assert_eq!(f["prompt"]["feature"]["content"]["_type"], "List");
        assert_eq!(f["step"]["dtype"], "int64");
    }

    #[test]
    fn a_row_that_does_not_fit_the_schema_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let mut w = TableWriter::create(&path, schema(), vec![], 10).unwrap();
        let e = w
            .push(vec![
                Cell::Int(1),
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
            ])
            .unwrap_err();
        assert!(
            e.to_string().contains("does not fit the field prompt"),
            "{e}"
        );
        assert!(w.push(vec![Cell::Null]).is_err(), "too few cells");
    }
}
