//! Calls the typed `daytrade:platform/data` import and answers what it got
//! (`{:?}` of the WIT values): `GET /client/<function>`. The tests compare
//! the answers of this component composed with data-service and with
//! data-remote (over HTTP), function by function.

// `#[http_component]` and the typed bindings expand to canonical-ABI code, which is unsafe.
#![allow(unsafe_code)]

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

wit_bindgen::generate!({
    world: "data-client",
    path: "../../wit",
});

use daytrade::platform::data;
use daytrade::platform::types::Interval;

#[http_component]
fn handle(req: Request) -> Response {
    let path = req
        .header("spin-path-info")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let answer = match path.trim_start_matches('/') {
        "bars" => format!(
            "{:?}",
            data::bars(&data::BarQuery {
                symbol: "IBM".into(),
                interval: Interval::OneDay,
                from: Some("2010-08-01".into()),
                to: None,
                include_features: true,
            })
        ),
        "bars-unknown" => format!(
            "{:?}",
            data::bars(&data::BarQuery {
                symbol: "ZZZZ".into(),
                interval: Interval::OneDay,
                from: None,
                to: None,
                include_features: false,
            })
        ),
        "batch-fetch" => format!(
            "{:?}",
            data::batch_fetch(
                &["IBM".into(), "ZZZZ".into()],
                None,
                Some("2010-08-16"),
                None
            )
        ),
        "closes" => format!(
            "{:?}",
            data::closes(&["IBM".into()], Interval::OneDay, Some("2010-08-01"), None)
        ),
        "features" => format!("{:?}", data::features("IBM", None, None)),
        "batch-features" => format!(
            "{:?}",
            data::batch_features(&["IBM".into(), "ZZZZ".into()], Some("2010-08-18"), None)
        ),
        "clock" => format!("{:?}", data::clock()),
        "advance-clock" => format!("{:?}", data::advance_clock(data::ClockStep::Day)),
        "import-bars" => format!(
            "{:?}",
            data::import_bars(
                b"time,open,high,low,close,volume\n2010-08-19 09:00,2500,2510,2490,2505,1000\n",
                Interval::OneMinute,
                Some("7203.T"),
            )
        ),
        "import-bad" => format!(
            "{:?}",
            data::import_bars(
                b"time,open\nnot a time,1\n",
                Interval::OneMinute,
                Some("7203.T")
            )
        ),
        "symbols" => format!("{:?}", data::symbols().map(|s| s.len())),
        "health" => format!("{:?}", data::health()),
        "version" => format!("{:?}", data::version()),
        other => return Response::new(404, format!("no function `{other}`")),
    };
    Response::new(200, answer)
}
