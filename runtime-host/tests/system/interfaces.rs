//! The WIT each built component carries (what `wasm-tools component wit`
//! prints): the `daytrade:platform` interfaces it exports and imports are
//! the worlds of `wit/worlds.wit`, generated from `wit/` by `wit-bindgen`.

use std::collections::BTreeSet;

use crate::common::component_wasm;

/// The `daytrade:platform` interfaces of a built component's world, as
/// (exports, imports), without the package's version.
fn platform_interfaces(crate_name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let bytes = std::fs::read(component_wasm(crate_name)).unwrap();
    let wit_component::DecodedWasm::Component(resolve, world) =
        wit_component::decode(&bytes).unwrap()
    else {
        panic!("{crate_name} is not a component");
    };
    let names = |items: &mut dyn Iterator<Item = &wit_parser::WorldKey>| {
        items
            .filter_map(|key| match key {
                wit_parser::WorldKey::Interface(id) => resolve.id_of(*id),
                wit_parser::WorldKey::Name(_) => None,
            })
            .filter_map(|name| {
                let name = name.split('@').next().unwrap_or(&name).to_string();
                name.strip_prefix("daytrade:platform/").map(str::to_string)
            })
            // `types` holds only types: an import the bindings need, not a call.
            .filter(|name| name != "types")
            .collect::<BTreeSet<_>>()
    };
    let world = &resolve.worlds[world];
    (
        names(&mut world.exports.keys()),
        names(&mut world.imports.keys()),
    )
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn each_component_exports_its_interface_and_imports_what_it_calls() {
    for (component, exports, imports) in [
        ("data-service", &["data"][..], &[][..]),
        ("symbol-service", &["symbols"], &["data"]),
        // The HTTP adapter a `data` import is satisfied by across pods.
        ("data-remote", &["data"], &[]),
        // Built from `ml-imports` so far: its `ml` export is to come.
        ("ml-service", &[], &["data"]),
        // Built from `execution-imports` so far: symbols, ml and
        // notifications are still called over HTTP.
        ("execution-service", &[], &["data"]),
    ] {
        assert_eq!(
            platform_interfaces(component),
            (set(exports), set(imports)),
            "{component}: (exports, imports) of daytrade:platform"
        );
    }
}

/// Every component still serves its HTTP routes beside its typed export.
#[test]
fn the_services_still_export_the_http_handler() {
    for component in ["data-service", "symbol-service"] {
        let bytes = std::fs::read(component_wasm(component)).unwrap();
        let wit_component::DecodedWasm::Component(resolve, world) =
            wit_component::decode(&bytes).unwrap()
        else {
            panic!("{component} is not a component");
        };
        let exports: Vec<String> = resolve.worlds[world]
            .exports
            .keys()
            .map(|key| resolve.name_world_key(key))
            .collect();
        assert!(
            exports
                .iter()
                .any(|e| e.starts_with("wasi:http/incoming-handler")),
            "{component}: {exports:?}"
        );
    }
}
