//! Test support: check that a JSON value is the projection of a WIT record of
//! `wit/` (same field names, in snake case). Enabled for other crates' tests by
//! the `wit-check` feature.

use std::path::Path;

/// The fields of record `record` of interface `interface`, in snake case,
/// each with whether it is an `option` (may be absent on the wire).
pub fn record_fields_with_options(interface: &str, record: &str) -> Vec<(String, bool)> {
    let wit_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve.push_dir(&wit_dir).expect("wit/ parses");
    let iface = resolve.packages[pkg].interfaces[interface];
    let ty = resolve.interfaces[iface].types[record];
    let optional = |ty: &wit_parser::Type| match ty {
        wit_parser::Type::Id(id) => {
            matches!(resolve.types[*id].kind, wit_parser::TypeDefKind::Option(_))
        }
        _ => false,
    };
    match &resolve.types[ty].kind {
        wit_parser::TypeDefKind::Record(r) => r
            .fields
            .iter()
            .map(|f| (f.name.replace('-', "_"), optional(&f.ty)))
            .collect(),
        other => panic!("{interface}.{record} is not a record: {other:?}"),
    }
}

/// The field names of record `record` of interface `interface`, in snake case.
pub fn record_fields(interface: &str, record: &str) -> Vec<String> {
    record_fields_with_options(interface, record)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// Panic unless `value` is an object with every field of the WIT record and
/// nothing else; `option` fields may be absent.
pub fn assert_projects(value: &serde_json::Value, interface: &str, record: &str) {
    let fields = record_fields_with_options(interface, record);
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("`{interface}.{record}`: not a JSON object: {value}"));
    let mut unknown: Vec<&String> = object
        .keys()
        .filter(|k| !fields.iter().any(|(name, _)| name == *k))
        .collect();
    unknown.sort();
    let mut missing: Vec<&String> = fields
        .iter()
        .filter(|(name, optional)| !optional && !object.contains_key(name))
        .map(|(name, _)| name)
        .collect();
    missing.sort();
    assert!(
        unknown.is_empty() && missing.is_empty(),
        "JSON differs from WIT record `{interface}.{record}`: not in WIT {unknown:?}, missing {missing:?}"
    );
}
