#!/usr/bin/env python3
"""Write spin.pods.toml: spin.toml with every service in a pod of its own.

spin.toml composes the components in one process: an import such as
`daytrade:platform/data` is satisfied by `{ component = "data-service" }`, a
typed function call. In a cluster each service runs in its own pod (SpinKube
SpinApps, runtime-host Deployments) and a typed import must cross pods over
HTTP, through the mesh. This script derives that manifest from spin.toml:

- a dependency on an application component (its id, or its Wasm's path)
  becomes the component's HTTP adapter (`[component.<dep>.tool.pods] adapter = "<wasm>"`), which inherits
  its importer's outbound hosts and variables (the service URL);
- the importer keeps only the grants `[component.<id>.tool.pods]` lists
  (`allowed_outbound_hosts`, `files`, `key_value_stores`, and the names of the
  `variables` it keeps): what it needs itself, not what its composed
  dependency needed.

Spin ignores `tool` tables. `python3 scripts/pods_manifest.py` rewrites the
file; `--check` fails when the committed file is not what spin.toml gives.
"""

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "spin.toml"
TARGET = ROOT / "spin.pods.toml"
# What an HTTP adapter needs of its importer: the URL variable and the host.
ADAPTER_INHERITS = ["allowed_outbound_hosts", "variables"]
HEADER = """\
# GENERATED from spin.toml by scripts/pods_manifest.py: do not edit.
# The same application with every service in a pod of its own (SpinKube
# SpinApps and runtime-host Deployments, k8s/README.md): a typed import of
# another service is its HTTP adapter, so calls between pods go through the
# mesh. spin.toml composes them in one process instead.
"""


def pods(manifest: dict) -> dict:
    components = manifest["component"]
    for cid, component in components.items():
        dependencies = component.get("dependencies", {})
        if not dependencies:
            continue
        keep = component.get("tool", {}).get("pods")
        if keep is None:
            raise SystemExit(f"component `{cid}` has dependencies but no [component.{cid}.tool.pods]")
        for name, dependency in dependencies.items():
            # A component of the app, by id or by its Wasm.
            target = dependency.get("component") or next(
                (tid for tid, c in components.items() if c.get("source") == dependency.get("path")),
                None,
            )
            if target is None:
                continue
            adapter = components[target].get("tool", {}).get("pods", {}).get("adapter")
            if adapter is None:
                raise SystemExit(f"component `{target}` has no [component.{target}.tool.pods] adapter")
            dependencies[name] = {"path": adapter, "inherit_configuration": ADAPTER_INHERITS}
        keep = {k: v for k, v in keep.items() if k != "adapter"}
        for grant in ("allowed_outbound_hosts", "files", "key_value_stores"):
            if grant in keep:
                component[grant] = keep[grant]
            else:
                component.pop(grant, None)
        if "variables" in keep:
            kept = set(keep["variables"])
            unknown = kept - set(component.get("variables", {}))
            if unknown:
                raise SystemExit(f"component `{cid}`: tool.pods keeps unknown variables {sorted(unknown)}")
            component["variables"] = {k: v for k, v in component["variables"].items() if k in kept}
        component.pop("dependencies_inherit_configuration", None)
    for component in components.values():
        component.pop("tool", None)
    return manifest


def key(k: str) -> str:
    bare = k and all(c.isalnum() or c in "-_" for c in k)
    return k if bare else value(k)


def value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        escaped = v.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(v, list):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + " }"
    raise SystemExit(f"cannot write {v!r}")


def table(path: list[str], body: dict, out: list[str]) -> None:
    """`[a.b]` with its plain values, then its sub-tables (arrays of tables as `[[a.b]]`)."""
    # A table of small tables (`[variables]`, `dependencies`) writes them inline.
    inline = bool(path) and all(isinstance(v, dict) and is_leaf(v) for v in body.values())
    plain = {
        k: v for k, v in body.items() if inline or (not isinstance(v, dict) and not is_tables(v))
    }
    if path and (plain or not body):
        out.append(f"\n[{'.'.join(key(p) for p in path)}]")
    for k, v in plain.items():
        out.append(f"{key(k)} = {value(v)}")
    for k, v in body.items():
        if k in plain:
            continue
        if isinstance(v, dict):
            table([*path, k], v, out)
        elif is_tables(v):
            for item in v:
                out.append(f"\n[[{'.'.join(key(p) for p in [*path, k])}]]")
                for ik, iv in item.items():
                    out.append(f"{key(ik)} = {value(iv)}")


def is_leaf(v: dict) -> bool:
    return not any(isinstance(x, dict) or is_tables(x) for x in v.values())


def is_tables(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def render(manifest: dict) -> str:
    out: list[str] = []
    table([], manifest, out)
    return HEADER + "\n".join(out).lstrip("\n").join(["", "\n"])


def main() -> None:
    text = render(pods(tomllib.loads(SOURCE.read_text())))
    if "--check" in sys.argv[1:]:
        if not TARGET.exists() or TARGET.read_text() != text:
            raise SystemExit(
                f"{TARGET.name} is not what spin.toml gives: run python3 scripts/pods_manifest.py"
            )
        return
    TARGET.write_text(text)


if __name__ == "__main__":
    main()
