//! Test support: check that a JSON value is the projection of a WIT record of
//! `wit/` (same field names, in snake case). Enabled for other crates' tests by
//! the `wit-check` feature.

use std::path::Path;

/// The field names of record `record` of interface `interface`, in snake case.
pub fn record_fields(interface: &str, record: &str) -> Vec<String> {
    let wit_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve.push_dir(&wit_dir).expect("wit/ parses");
    let iface = resolve.packages[pkg].interfaces[interface];
    let ty = resolve.interfaces[iface].types[record];
    match &resolve.types[ty].kind {
        wit_parser::TypeDefKind::Record(r) => {
            r.fields.iter().map(|f| f.name.replace('-', "_")).collect()
        }
        other => panic!("{interface}.{record} is not a record: {other:?}"),
    }
}

/// Panic unless `value` is an object with exactly the fields of the WIT record.
pub fn assert_projects(value: &serde_json::Value, interface: &str, record: &str) {
    let mut expected = record_fields(interface, record);
    let mut actual: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("`{interface}.{record}`: not a JSON object: {value}"))
        .keys()
        .cloned()
        .collect();
    expected.sort();
    actual.sort();
    assert_eq!(
        actual, expected,
        "JSON differs from WIT record `{interface}.{record}`"
    );
}
